//! Throughput of `audit report` on a generated trail (a million records should take seconds).
//! Run with `cargo bench --bench audit_report`; `FAPI_GUARD_REPORT_RECORDS` changes the size
//! (default 1,000,000).
//!
//! The trail is sealed with the writer's own chain code: 4 replicas, each a rotated set of
//! files of 50,000 records, 300 clients (some only before the window), 12 routes, decisions
//! with outcomes, a few revocations. Peak RSS is measured for the report alone: the kernel's
//! high-water mark is reset after generation (`/proc/self/clear_refs`, Linux).

use std::path::PathBuf;
use std::time::Instant;

use fapi_guard::audit::chain::ChainState;
use fapi_guard::audit::record::{
    Actor, AuditRecord, ConsentInfo, RevocationInfo, TokenInfo, token_digest,
};
use fapi_guard::audit::report::{self, ReportOptions};
use fapi_guard::reason::DenyReason;

const REPLICAS: usize = 4;
const PER_FILE: usize = 50_000;
const CLIENTS: usize = 300;
const AS_OF: i64 = 1_795_500_000_000_000;
const DAY: i64 = 86_400_000_000;

const POLICY: &str = "\
api: accounts
defaults:
  scopes: [accounts]
routes:
  - {name: r0, method: GET, path: /r0}
  - {name: r1, method: GET, path: /r1}
  - {name: r2, method: GET, path: /r2}
  - {name: r3, method: GET, path: /r3, scopes: [transactions]}
  - {name: r4, method: GET, path: /r4, scopes: [transactions]}
  - {name: r5, method: POST, path: /r5, scopes: [payments]}
  - {name: r6, method: GET, path: /r6, binding: unbound_allowed}
  - {name: r7, method: GET, path: /r7}
  - {name: r8, method: GET, path: /r8}
  - {name: r9, method: GET, path: /r9}
  - {name: r10, method: GET, path: /r10}
  - {name: r11, method: GET, path: /r11}
";

fn record(i: usize, ts_secs: i64) -> AuditRecord {
    let client = i * 7919 % CLIENTS;
    let route = i % 12;
    let deny = match i % 17 {
        0 => Some(DenyReason::ScopeInsufficient),
        1 => Some(DenyReason::TokenExpired),
        2 => Some(DenyReason::DpopProofReplayed),
        _ => None,
    };
    let mut scopes = vec!["accounts".to_owned()];
    if client.is_multiple_of(3) {
        scopes.push("payments".into());
    }
    if client.is_multiple_of(5) {
        scopes.push("transactions".into());
    }
    let jti = format!("jti-{client}-{}", i / 50);
    let mut r = AuditRecord::decision(deny)
        .interaction_id(format!("00000000-0000-4000-8000-{i:012}"))
        .trace_id(format!("{i:032x}"))
        .route("accounts", format!("r{route}"))
        .request("GET", format!("/r{route}"))
        .client_id(format!("tpp-{client}"))
        .subject(format!("psu-{}", i % 5000))
        .issuer("https://as.bank.example")
        .token(TokenInfo {
            jti: Some(jti.clone()),
            sha256: token_digest(&jti),
            exp: Some(ts_secs + if client.is_multiple_of(11) { 7200 } else { 300 }),
            iat: Some(ts_secs),
            binding: if route == 6 { "none" } else { "dpop" },
            jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
        })
        .consent(ConsentInfo {
            id: format!("c-{client}"),
            source: "record",
            status: Some("Authorised".into()),
            permissions: Some(vec![
                "ReadAccountsBasic".into(),
                "ReadAccountsDetail".into(),
            ]),
        })
        .purpose("account-information")
        .scopes(scopes)
        .policy_revision("sha256:bench")
        .decide_us(12);
    if client.is_multiple_of(13) {
        r = r.delegation(vec![Actor {
            sub: format!("spiffe://bank.example/ns/aggregators/sa/agg-{}", client % 4),
            client_id: Some("agg".into()),
            iss: None,
        }]);
    }
    r
}

fn generate(dir: &std::path::Path, total: usize) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let per_replica = total.div_ceil(REPLICAS);
    let mut written = 0usize;
    for rep in 0..REPLICAS {
        let mut state = ChainState::genesis();
        let mut buf = Vec::with_capacity(64 << 20);
        let mut n = 0usize;
        let mut part = 0usize;
        while n < per_replica && written < total {
            // 40 days of traffic, oldest first; every 4th decision gets its outcome record.
            let idx = written;
            let ts = AS_OF - 40 * DAY + (idx as i64 * (40 * DAY / total as i64));
            let rec = if idx % 4 == 3 {
                AuditRecord::outcome(200, 5_000)
                    .interaction_id(format!("00000000-0000-4000-8000-{:012}", idx - 1))
            } else if idx % 100_000 == 99_999 {
                AuditRecord::revocation(RevocationInfo {
                    kind: "jti",
                    value_sha256: token_digest(&format!("jti-{}-{}", idx % CLIENTS, idx / 50)),
                    source: "admin",
                    until: None,
                })
            } else {
                record(idx, ts / 1_000_000)
            };
            state.seal_into(&rec, ts, &mut buf).expect("sealed");
            n += 1;
            written += 1;
            if n.is_multiple_of(PER_FILE) || n == per_replica || written == total {
                // Named as the proxy names a rotated file: after its first record's seq.
                let first_seq = part * PER_FILE + 1;
                let p = dir.join(format!("replica-{rep}.audit.jsonl.{first_seq:020}"));
                std::fs::write(&p, &buf).expect("write");
                buf.clear();
                files.push(p);
                part += 1;
            }
        }
    }
    files
}

/// Peak resident set size of this process, in KiB (Linux).
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let total: usize = std::env::var("FAPI_GUARD_REPORT_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let files = generate(dir.path(), total);
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "generated {total} records in {} files ({:.0} MiB) in {:.1} s",
        files.len(),
        bytes as f64 / 1_048_576.0,
        started.elapsed().as_secs_f64()
    );
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    std::fs::write(policies.join("accounts.yaml"), POLICY).expect("policy");

    // Reset the RSS high-water mark so it measures the report only (Linux ≥ 4.0).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = vm_hwm_kib();
    let opts = ReportOptions {
        paths: vec![dir.path().to_owned()],
        policies: vec![policies],
        since_secs: 30 * 86_400,
        as_of_micros: AS_OF,
        max_token_lifetime_secs: 600,
    };
    let started = Instant::now();
    let report = report::build(&opts).expect("report");
    let secs = started.elapsed().as_secs_f64();
    let json = report::render(&report, report::Format::Json);
    let html = report::render(&report, report::Format::Html);
    assert_eq!(report.totals.records, total as u64, "every record counted");
    assert_eq!(report.integrity.untrusted_files, 0);
    println!(
        "audit report: {total} records in {secs:.2} s = {:.0} records/s ({:.0} MiB/s); \
         {} principals, {} findings; JSON {} KiB, HTML {} KiB",
        total as f64 / secs,
        bytes as f64 / 1_048_576.0 / secs,
        report.principals.len(),
        report.findings.len(),
        json.len() / 1024,
        html.len() / 1024
    );
    match (reset, before, vm_hwm_kib()) {
        (true, Some(b), Some(after)) => println!(
            "peak RSS during the report: {:.1} MiB (before: {:.1} MiB)",
            after as f64 / 1024.0,
            b as f64 / 1024.0
        ),
        _ => println!("peak RSS: not measurable here (needs Linux /proc)"),
    }
}
