//! Unit tests on trails sealed here with the writer's own chain code. The end-to-end tests on
//! trails written by the real proxy are in `tests/audit_report.rs`.

use std::path::{Path, PathBuf};

use super::*;
use crate::audit::chain::ChainState;
use crate::audit::record::{AuditRecord, RevocationInfo, TokenInfo, token_digest};
use crate::reason::DenyReason;

const DAY: i64 = 86_400 * 1_000_000;
/// 2026-11-24T06:00:00Z
const AS_OF: i64 = 1_795_500_000_000_000;

const POLICY: &str = "\
api: accounts
defaults:
  scopes: [accounts]
routes:
  - name: list-accounts
    method: GET
    path: /accounts
  - name: create-payment
    method: POST
    path: /payments
    scopes: [payments]
";

fn call(client: &str, jti: &str, scopes: &[&str], deny: Option<DenyReason>) -> AuditRecord {
    let route = if scopes.contains(&"payments") && deny.is_none() {
        "create-payment"
    } else {
        "list-accounts"
    };
    AuditRecord::decision(deny)
        .interaction_id(format!("i-{client}-{jti}"))
        .route("accounts", route)
        .client_id(client)
        .subject("psu-9")
        .scopes(scopes.iter().map(|s| s.to_string()).collect())
        .token(TokenInfo {
            jti: Some(jti.into()),
            sha256: token_digest(jti),
            exp: Some(1_795_500_000 - 86_400 * 3 + 300),
            iat: Some(1_795_500_000 - 86_400 * 3),
            binding: "dpop",
            jkt: None,
        })
}

/// Seals `records` (time, record) after `state` into `dir/name`.
fn seal(dir: &Path, name: &str, state: &mut ChainState, records: &[(i64, AuditRecord)]) -> PathBuf {
    let mut buf = Vec::new();
    for (ts, r) in records {
        state.seal_into(r, *ts, &mut buf).expect("sealed");
    }
    let p = dir.join(name);
    std::fs::write(&p, buf).expect("write");
    p
}

fn opts(paths: Vec<PathBuf>, policies: Vec<PathBuf>) -> ReportOptions {
    ReportOptions {
        paths,
        policies,
        since_secs: 30 * 86_400,
        as_of_micros: AS_OF,
        max_token_lifetime_secs: 600,
    }
}

fn policy_dir(dir: &Path) -> PathBuf {
    let p = dir.join("policies");
    std::fs::create_dir_all(&p).expect("mkdir");
    std::fs::write(p.join("accounts.yaml"), POLICY).expect("policy");
    p
}

fn codes(r: &Report) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .findings
        .iter()
        .map(|f| (f.code.to_owned(), f.principal.clone()))
        .collect();
    v.sort();
    v
}

fn pair(code: &str, who: &str) -> (String, String) {
    (code.to_owned(), who.to_owned())
}

#[test]
fn calls_after_a_revocation_are_found_and_reauthentication_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = AS_OF - 2 * DAY;
    let revoke = |kind, value: &str| {
        AuditRecord::revocation(RevocationInfo {
            kind,
            value_sha256: token_digest(value),
            source: "admin",
            until: None,
        })
    };
    let mut fresh = call("tpp-b", "j-new", &["accounts"], None);
    if let Some(t) = fresh.token.as_mut() {
        // Issued after the subject revocation below: a new sign-in, not a revoked session.
        t.iat = Some((t0 + 20_000_000) / 1_000_000);
        t.exp = t.iat.map(|i| i + 300);
    }
    let records = vec![
        (t0, call("tpp-a", "j-1", &["accounts"], None)),
        (t0 + 1_000_000, revoke("jti", "j-1")),
        (t0 + 2_000_000, call("tpp-a", "j-1", &["accounts"], None)),
        (
            t0 + 3_000_000,
            call(
                "tpp-a",
                "j-1",
                &["accounts"],
                Some(DenyReason::TokenRevoked),
            ),
        ),
        (t0 + 10_000_000, revoke("subject", "psu-9")),
        (t0 + 30_000_000, fresh),
    ];
    let p = seal(dir.path(), "a.jsonl", &mut ChainState::genesis(), &records);
    let report = build(&opts(vec![p], vec![policy_dir(dir.path())])).expect("report");
    assert_eq!(codes(&report), [pair("used_after_revocation", "tpp-a")]);
    let a = report
        .principals
        .iter()
        .find(|p| p.id == "tpp-a")
        .expect("tpp-a");
    assert_eq!(a.tokens.allowed_after_revocation.count, 1);
    assert_eq!(a.tokens.denied_after_revocation, 1);
    assert_eq!(
        a.tokens
            .allowed_after_revocation
            .example_interaction_id
            .as_deref(),
        Some("i-tpp-a-j-1")
    );
    assert_eq!(a.score, 50, "revocation halves the score");
    assert_eq!(report.totals.revocations, 2);
    let b = report
        .principals
        .iter()
        .find(|p| p.id == "tpp-b")
        .expect("tpp-b");
    assert_eq!(b.tokens.allowed_after_revocation.count, 0);
}

#[test]
fn files_are_grouped_into_chains_whatever_their_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = AS_OF - DAY;
    let rec = |i: i64| (t + i, call("tpp-a", &format!("j{i}"), &["accounts"], None));
    let mut a = ChainState::genesis();
    let a1 = seal(dir.path(), "z-a1.jsonl", &mut a, &[rec(1), rec(2)]);
    let mut at_fork = a.clone();
    let a2 = seal(dir.path(), "m-a2.jsonl", &mut a, &[rec(3)]);
    // A second file continuing a1: a fork, so neither branch can be trusted.
    let fork = seal(dir.path(), "fork.jsonl", &mut at_fork, &[rec(4)]);
    let mut b = ChainState::genesis();
    let b1 = seal(dir.path(), "b1.jsonl", &mut b, &[rec(5)]);
    let mut lost = b.clone();
    seal(dir.path(), "lost.jsonl", &mut lost, &[rec(6)]);
    // b3 continues a file that is not given: its anchor is taken on trust, like `audit verify`.
    let b3 = seal(dir.path(), "b3.jsonl", &mut lost, &[rec(7), rec(8)]);

    let checked =
        collect::check_files(&[fork.clone(), b3.clone(), a2.clone(), b1.clone(), a1.clone()])
            .expect("checked");
    let status = |p: &Path| {
        checked
            .files
            .iter()
            .find(|f| f.path == p.display().to_string())
            .map(|f| f.status)
    };
    assert_eq!(status(&fork), Some("untrusted"));
    assert_eq!(status(&a2), Some("untrusted"), "both branches of a fork");
    assert_eq!(status(&a1), Some("trusted"));
    assert_eq!(checked.untrusted(), 2);
    let chains: Vec<(Vec<String>, &str, u64)> = checked
        .chains
        .iter()
        .map(|c| (c.files.clone(), c.starts, c.records))
        .collect();
    let name = |p: &Path| p.display().to_string();
    assert!(
        chains.contains(&(vec![name(&a1)], "genesis", 2)),
        "{chains:?}"
    );
    assert!(
        chains.contains(&(vec![name(&b1)], "genesis", 1)),
        "{chains:?}"
    );
    assert!(
        chains.contains(&(vec![name(&b3)], "anchor", 2)),
        "{chains:?}"
    );
    let counted: Vec<&Path> = checked.counted_files().collect();
    assert_eq!(counted.len(), 3);
}

#[test]
fn rotated_files_link_across_a_chain_in_any_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = AS_OF - DAY;
    let mut s = ChainState::genesis();
    let mut files = Vec::new();
    for i in 0..4 {
        let recs: Vec<(i64, AuditRecord)> = (0..3)
            .map(|j| {
                (
                    t + i * 10 + j,
                    call("tpp-a", &format!("j{i}{j}"), &["accounts"], None),
                )
            })
            .collect();
        files.push(seal(dir.path(), &format!("audit.jsonl.{i}"), &mut s, &recs));
    }
    files.reverse();
    let checked = collect::check_files(&files).expect("checked");
    assert_eq!(checked.chains.len(), 1);
    let c = &checked.chains[0];
    assert_eq!(
        (c.starts, c.records, c.first_seq, c.last_seq),
        ("genesis", 12, Some(1), Some(12))
    );
    assert_eq!(c.head.as_deref(), Some(s.prev.as_str()));
    let order: Vec<String> = files
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(c.files, order);
}

#[test]
fn the_window_separates_dormant_from_active_and_ignores_the_future() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = vec![
        (AS_OF - 45 * DAY, call("tpp-old", "j1", &["accounts"], None)),
        (
            AS_OF - 31 * DAY,
            call("tpp-old", "j2", &["accounts", "payments"], None),
        ),
        (AS_OF - 45 * DAY, call("tpp-now", "j3", &["accounts"], None)),
        (AS_OF - DAY, call("tpp-now", "j4", &["accounts"], None)),
        (AS_OF + DAY, call("tpp-future", "j5", &["accounts"], None)),
    ];
    let p = seal(dir.path(), "a.jsonl", &mut ChainState::genesis(), &records);
    let report = build(&opts(vec![p], vec![policy_dir(dir.path())])).expect("report");
    assert_eq!(codes(&report), [pair("dormant_client", "tpp-old")]);
    let old = report
        .principals
        .iter()
        .find(|p| p.id == "tpp-old")
        .expect("tpp-old");
    assert_eq!(
        (old.id.as_str(), old.dormant, old.score),
        ("tpp-old", true, 0)
    );
    assert_eq!(
        old.scopes.granted,
        ["accounts", "payments"],
        "held before the window"
    );
    assert_eq!(
        old.seen.last_seen.as_deref(),
        Some("2026-10-24T06:00:00.000000Z")
    );
    assert_eq!(report.findings[0].items, ["accounts", "payments"]);
    assert_eq!(report.totals.after_as_of, 1);
    assert_eq!(report.totals.before_window, 3);
    assert!(report.principals.iter().all(|p| p.id != "tpp-future"));
    let now = report
        .principals
        .iter()
        .find(|p| p.id == "tpp-now")
        .expect("tpp-now");
    assert_eq!(
        (now.calls, now.calls_before_window, now.dormant),
        (1, 1, false)
    );
}

#[test]
fn without_policies_needs_are_unknown_and_no_scope_is_called_unused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = vec![(
        AS_OF - DAY,
        call("tpp-a", "j1", &["accounts", "payments", "openid"], None),
    )];
    let p = seal(dir.path(), "a.jsonl", &mut ChainState::genesis(), &records);
    let report = build(&opts(vec![p.clone()], vec![])).expect("report");
    assert!(report.findings.is_empty(), "{:?}", codes(&report));
    let a = &report.principals[0];
    assert_eq!(a.scopes.needed, None);
    assert_eq!(a.scopes.ignored, ["openid"]);
    assert_eq!(a.score, 100);
    // With the policy: the call was to create-payment, whose `scopes` replace the defaults, so
    // only `payments` was needed; `accounts` (guarding GET routes only) is a medium finding.
    let with = build(&opts(vec![p], vec![policy_dir(dir.path())])).expect("report");
    assert_eq!(codes(&with), [pair("unused_scopes", "tpp-a")]);
    assert_eq!(with.findings[0].severity, "medium");
    assert_eq!(with.principals[0].scopes.used, ["payments"]);
}

#[test]
fn unused_scopes_name_the_routes_that_would_need_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records: Vec<(i64, AuditRecord)> = (0..3)
        .map(|i| {
            (
                AS_OF - DAY + i,
                call(
                    "tpp-a",
                    &format!("j{i}"),
                    &["accounts", "payments", "admin"],
                    Some(DenyReason::ConsentExpired),
                ),
            )
        })
        .collect();
    let p = seal(dir.path(), "a.jsonl", &mut ChainState::genesis(), &records);
    let report = build(&opts(vec![p], vec![policy_dir(dir.path())])).expect("report");
    assert_eq!(codes(&report), [pair("unused_scopes", "tpp-a")]);
    let f = &report.findings[0];
    assert_eq!(f.severity, "high", "payments guards a POST route");
    assert_eq!(
        f.items,
        [
            "admin (held in 3 calls; no route needs it)",
            "payments (held in 3 calls; needed by POST accounts/create-payment)"
        ]
    );
    assert_eq!(f.evidence.count, 3);
    assert_eq!(report.principals[0].score, 33);
}

#[test]
fn hostile_identifiers_are_escaped_in_html() {
    let dir = tempfile::tempdir().expect("tempdir");
    let evil = "<script>alert(1)</script>\"'&";
    let records = vec![(
        AS_OF - DAY,
        call(
            evil,
            "j1",
            &["accounts"],
            Some(DenyReason::ScopeInsufficient),
        ),
    )];
    let p = seal(dir.path(), "a.jsonl", &mut ChainState::genesis(), &records);
    let report = build(&opts(vec![p], vec![])).expect("report");
    let html = render(&report, Format::Html);
    assert!(!html.contains("<script"), "raw markup from the trail");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
    let json: serde_json::Value =
        serde_json::from_str(&render(&report, Format::Json)).expect("json");
    assert_eq!(json["principals"][0]["id"], evil);
}

#[test]
fn window_and_paths_are_checked() {
    let cases = [
        ("30d", Ok(30 * 86_400)),
        ("12h", Ok(43_200)),
        ("2w", Ok(1_209_600)),
        ("45s", Ok(45)),
        ("0d", Err(())),
        ("30", Err(())),
        ("d", Err(())),
        ("30y", Err(())),
        ("99999999999999999999d", Err(())),
    ];
    for (input, want) in cases {
        assert_eq!(parse_window(input).map_err(|_| ()), want, "{input}");
    }
    let missing = build(&opts(
        vec![PathBuf::from("/nonexistent/audit.jsonl")],
        vec![],
    ));
    assert!(matches!(missing, Err(ReportError::Unreadable(..))));
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = build(&opts(vec![dir.path().to_owned()], vec![]));
    assert!(matches!(empty, Err(ReportError::NoFiles)));
    std::fs::write(dir.path().join("bad.yaml"), "api: [").expect("write");
    let p = seal(dir.path(), "a.jsonl", &mut ChainState::genesis(), &[]);
    let bad = build(&opts(vec![p], vec![dir.path().join("bad.yaml")]));
    assert!(matches!(bad, Err(ReportError::Policies(_))));
}

/// Records missing inside one rotated log (a deleted middle file, a file cut at a line boundary
/// or at its start) are untrusted evidence, never a silent new chain start; an earlier part of
/// the log left out (retention) and other replicas' logs are not.
#[test]
fn gaps_inside_one_log_are_untrusted_and_retention_is_not() {
    let t = AS_OF - DAY;
    let rec = |i: i64| (t + i, call("tpp-a", &format!("j{i}"), &["accounts"], None));
    // One log in `dir`: audit.jsonl.<seq 1> (1-2), audit.jsonl.<seq 3> (3-4), audit.jsonl (5-6).
    let log = |dir: &Path| {
        let mut s = ChainState::genesis();
        let f1 = seal(
            dir,
            "audit.jsonl.00000000000000000001",
            &mut s,
            &[rec(1), rec(2)],
        );
        let f2 = seal(
            dir,
            "audit.jsonl.00000000000000000003",
            &mut s,
            &[rec(3), rec(4)],
        );
        let f3 = seal(dir, "audit.jsonl", &mut s, &[rec(5), rec(6)]);
        (f1, f2, f3)
    };
    let status = |checked: &collect::Checked, p: &Path| {
        let f = checked
            .files
            .iter()
            .find(|f| f.path == p.display().to_string())
            .expect("file listed");
        (f.status, f.reason.clone().unwrap_or_default())
    };
    let cut_last_line = |p: &Path| {
        let text = std::fs::read_to_string(p).expect("read");
        let keep: Vec<&str> = text.lines().collect();
        std::fs::write(p, format!("{}\n", keep[..keep.len() - 1].join("\n"))).expect("write");
    };

    // The whole log: one trusted chain.
    let dir = tempfile::tempdir().expect("tempdir");
    let (f1, f2, f3) = log(dir.path());
    let checked = collect::check_files(&[f3.clone(), f1.clone(), f2.clone()]).expect("checked");
    assert_eq!((checked.untrusted(), checked.chains.len()), (0, 1));

    // The middle file deleted.
    let checked = collect::check_files(&[f1.clone(), f3.clone()]).expect("checked");
    for p in [&f1, &f3] {
        let (st, why) = status(&checked, p);
        assert_eq!(st, "untrusted", "{}", p.display());
        assert!(why.contains("records seq 3..=4 are missing"), "{why}");
    }
    assert_eq!(checked.counted_files().count(), 0);

    // The middle file cut at a line boundary (it still verifies on its own).
    cut_last_line(&f2);
    let checked = collect::check_files(&[f1.clone(), f2.clone(), f3.clone()]).expect("checked");
    assert_eq!(status(&checked, &f1).0, "trusted");
    for p in [&f2, &f3] {
        let (st, why) = status(&checked, p);
        assert_eq!(st, "untrusted", "{}", p.display());
        assert!(why.contains("records seq 4..=4 are missing"), "{why}");
    }
    let counted: Vec<&Path> = checked.counted_files().collect();
    assert_eq!(counted, [f1.as_path()]);

    // The last line of a rotated file replaced by another well-formed record.
    let dir = tempfile::tempdir().expect("tempdir");
    let (f1, f2, f3) = log(dir.path());
    cut_last_line(&f2);
    let mut s = ChainState::genesis();
    let mut buf = Vec::new();
    for r in [rec(1), rec(2), rec(3)] {
        s.seal_into(&r.1, r.0, &mut Vec::new()).expect("sealed");
    }
    s.seal_into(
        &call("tpp-a", "forged", &["payments"], None),
        t + 4,
        &mut buf,
    )
    .expect("sealed");
    let mut text = std::fs::read(&f2).expect("read");
    text.extend_from_slice(&buf);
    std::fs::write(&f2, text).expect("write");
    let checked = collect::check_files(&[f1.clone(), f2.clone(), f3.clone()]).expect("checked");
    let (st, why) = status(&checked, &f3);
    assert_eq!(st, "untrusted");
    assert!(
        why.contains("the record before seq 5 is not the one"),
        "{why}"
    );
    assert_eq!(status(&checked, &f2).0, "untrusted");

    // Records cut from the start of a rotated file: its name says where it began.
    let dir = tempfile::tempdir().expect("tempdir");
    let (f1, f2, f3) = log(dir.path());
    let text = std::fs::read_to_string(&f2).expect("read");
    std::fs::write(&f2, format!("{}\n", text.lines().nth(1).expect("line 2"))).expect("write");
    let checked = collect::check_files(&[f1.clone(), f2.clone(), f3.clone()]).expect("checked");
    let (st, why) = status(&checked, &f2);
    assert_eq!(st, "untrusted");
    assert!(
        why.contains("named for seq 3") && why.contains("starts at seq 4"),
        "{why}"
    );

    // Retention: the oldest file left out. The rest is one chain starting at an anchor.
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, f2, f3) = log(dir.path());
    let checked = collect::check_files(&[f2.clone(), f3.clone()]).expect("checked");
    assert_eq!(checked.untrusted(), 0);
    assert_eq!(checked.chains.len(), 1);
    assert_eq!(checked.chains[0].starts, "anchor");

    // Another replica's log ending early is not a gap in this one.
    let other = tempfile::tempdir().expect("tempdir");
    let mut b = ChainState::genesis();
    let b1 = seal(other.path(), "audit.jsonl", &mut b, &[rec(7)]);
    let checked = collect::check_files(&[b1, f3.clone()]).expect("checked");
    assert_eq!(checked.untrusted(), 0, "{:?}", checked.files);
}

/// Every actor of a chain is a principal, each counted once per call even when the chain names
/// it twice, with its role; an actor seen only before the window, at any hop, is dormant.
#[test]
fn every_actor_of_a_chain_is_reported_with_its_role() {
    use crate::audit::record::Actor;
    let dir = tempfile::tempdir().expect("tempdir");
    let actor = |sub: &str| Actor {
        sub: sub.to_owned(),
        ..Actor::default()
    };
    let chained = |jti: &str, chain: &[&str]| {
        call("tpp-a", jti, &["accounts"], None).delegation(chain.iter().map(|s| actor(s)).collect())
    };
    let records = vec![
        // Before the window: `old-hop` only ever acted as an earlier hop.
        (AS_OF - 40 * DAY, chained("j0", &["agent", "old-hop"])),
        (AS_OF - DAY, chained("j1", &["agent", "portal", "agent"])),
        (AS_OF - DAY + 1, chained("j2", &["agent", "portal"])),
    ];
    let p = seal(dir.path(), "a.jsonl", &mut ChainState::genesis(), &records);
    let report = build(&opts(vec![p], vec![policy_dir(dir.path())])).expect("report");
    let get = |id: &str| {
        report
            .principals
            .iter()
            .find(|p| p.kind == "actor" && p.id == id)
            .unwrap_or_else(|| panic!("actor {id} not reported"))
    };
    let agent = get("agent");
    assert_eq!(
        (
            agent.calls,
            agent.calls_as_current_actor,
            agent.calls_as_prior_actor
        ),
        (2, 2, 0),
        "named twice in one chain, counted once, as the current actor"
    );
    let portal = get("portal");
    assert_eq!(
        (
            portal.calls,
            portal.calls_as_current_actor,
            portal.calls_as_prior_actor
        ),
        (2, 0, 2)
    );
    assert_eq!(portal.delegation_peers, ["tpp-a"]);
    let old = get("old-hop");
    assert!(old.dormant && old.calls == 0 && old.calls_before_window == 1);
    assert!(codes(&report).contains(&pair("dormant_actor", "old-hop")));
    let client = report
        .principals
        .iter()
        .find(|p| p.kind == "client")
        .expect("client");
    // Peers come from calls in the window.
    assert_eq!(client.delegation_peers, ["agent", "portal"]);
}

/// Memory is bounded by clients × routes (and scopes, reasons, actors), never by records: ten
/// times the records from the same few clients leave the aggregation exactly as large. Every
/// record has its own interaction id, token and timestamp, so anything kept per record would
/// show.
#[test]
fn aggregation_state_does_not_grow_with_the_number_of_records() {
    use crate::audit::record::Actor;
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = Policies::load(&[policy_dir(dir.path())]).expect("policies");
    let retained = |n: usize| {
        let o = opts(Vec::new(), Vec::new());
        let mut agg = aggregate::Aggregator::new(&o, &policies, &[]);
        let mut state = ChainState::genesis();
        let mut buf = Vec::new();
        for i in 0..n {
            let client = format!("tpp-{}", i % 5);
            let deny = (i % 7 == 0).then_some(DenyReason::ScopeInsufficient);
            let scopes: &[&str] = if i % 2 == 0 {
                &["accounts"]
            } else {
                &["accounts", "payments"]
            };
            let mut r = call(&client, &format!("j{i:08}"), scopes, deny)
                .interaction_id(format!("00000000-0000-4000-8000-{i:012}"));
            if i % 3 == 0 {
                r = r.delegation(vec![Actor {
                    sub: format!("agent-{}", i % 2),
                    ..Actor::default()
                }]);
            }
            // Spread over the window and the 10 days before it.
            let ts = AS_OF - 40 * DAY + (i as i64 * 40 * DAY / n as i64);
            buf.clear();
            state.seal_into(&r, ts, &mut buf).expect("sealed");
            agg.line(buf.strip_suffix(b"\n").unwrap_or(&buf));
        }
        assert_eq!(agg.totals.records, n as u64);
        agg.retained()
    };
    let small = retained(2_000);
    let large = retained(20_000);
    assert!(small.0 > 50, "the state is measured: {small:?}");
    assert_eq!(
        small, large,
        "(entries, bytes) for 2,000 and 20,000 records"
    );
}
