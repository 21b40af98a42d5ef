//! `--format text`: the report for a terminal or a ticket.

use std::fmt::Write as _;

use super::model::{Report, Usage};

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    // `write!` to a String cannot fail.
    let _ = write_report(&mut o, r);
    o
}

fn write_report(o: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(o, "fapi-guard least-privilege report")?;
    writeln!(
        o,
        "window:    {} .. {} ({} s)",
        r.window.since, r.window.as_of, r.window.seconds
    )?;
    if r.policies.revisions.is_empty() {
        writeln!(
            o,
            "policies:  none given: scopes and permissions needed are unknown"
        )?;
    } else {
        writeln!(o, "policies:  {}", r.policies.revisions.join(", "))?;
    }
    if r.policies.records_with_other_revision > 0 {
        writeln!(
            o,
            "           {} decisions name a revision not given; judged by the last one",
            r.policies.records_with_other_revision
        )?;
    }
    let t = &r.totals;
    writeln!(
        o,
        "records:   {} counted, {} decisions in window ({} allow, {} deny, {} without client), {} before window",
        t.records, t.decisions_in_window, t.allows, t.denies, t.unattributed, t.before_window
    )?;

    writeln!(o, "\n== integrity")?;
    for (i, c) in r.integrity.chains.iter().enumerate() {
        let seq = match (c.first_seq, c.last_seq) {
            (Some(a), Some(b)) => format!("seq {a}..={b}"),
            _ => "no records".into(),
        };
        writeln!(
            o,
            "chain {}: {} records, {seq}, starts at {}: {}",
            i + 1,
            c.records,
            c.starts,
            c.files.join(" -> ")
        )?;
    }
    for f in &r.integrity.files {
        if f.status != "trusted" {
            writeln!(
                o,
                "{}: {} — {}",
                f.status.to_uppercase(),
                f.path,
                f.reason.as_deref().unwrap_or("")
            )?;
        }
    }
    if r.integrity.untrusted_files > 0 {
        writeln!(
            o,
            "{} file(s) untrusted: their records are NOT counted below",
            r.integrity.untrusted_files
        )?;
    }

    writeln!(o, "\n== findings ({})", r.findings.len())?;
    if r.findings.is_empty() {
        writeln!(o, "none")?;
    }
    for f in &r.findings {
        writeln!(
            o,
            "{:>2}. [{}] {} {} {}: {}",
            f.rank, f.severity, f.code, f.principal_kind, f.principal, f.summary
        )?;
        for item in &f.items {
            writeln!(o, "      - {item}")?;
        }
        let e = &f.evidence;
        writeln!(
            o,
            "      evidence: {} record(s), first {}, last {}, e.g. interaction {}",
            e.count,
            e.first_seen.as_deref().unwrap_or("-"),
            e.last_seen.as_deref().unwrap_or("-"),
            e.example_interaction_id.as_deref().unwrap_or("-")
        )?;
    }

    writeln!(o, "\n== principals")?;
    for p in &r.principals {
        writeln!(
            o,
            "{} {}  score {}{}  calls {} ({} allow, {} deny), before window {}, last seen {}",
            p.kind,
            p.id,
            p.score,
            if p.dormant { " DORMANT" } else { "" },
            p.calls,
            p.allows,
            p.denies,
            p.calls_before_window,
            p.seen.last_seen.as_deref().unwrap_or("-")
        )?;
        usage(o, "scopes", &p.scopes)?;
        usage(o, "consent permissions", &p.consent_permissions)?;
        for rt in &p.routes {
            writeln!(
                o,
                "    route {}/{}: {} allow, {} deny",
                rt.api, rt.route, rt.allows, rt.denies
            )?;
        }
        for d in &p.deny_reasons {
            writeln!(o, "    denied {} ×{}", d.reason, d.evidence.count)?;
        }
        let tk = &p.tokens;
        writeln!(
            o,
            "    tokens: max lifetime {}, unbound {} of {} ({:.0}%), on unbound_allowed routes {}, delegation depth {}, allowed after revocation {}",
            tk.max_lifetime_seconds
                .map_or("-".to_owned(), |s| format!("{s} s")),
            tk.unbound.count,
            tk.calls_with_token,
            tk.unbound_share * 100.0,
            tk.unbound_allowed_route_calls,
            tk.max_delegation_depth,
            tk.allowed_after_revocation.count
        )?;
        if !p.delegation_peers.is_empty() {
            let label = if p.kind == "actor" {
                "acted for"
            } else {
                "actors"
            };
            writeln!(o, "    {label}: {}", p.delegation_peers.join(", "))?;
        }
        if p.kind == "actor" {
            writeln!(
                o,
                "    in delegation chains: {} call(s) as the current actor, {} as an earlier hop",
                p.calls_as_current_actor, p.calls_as_prior_actor
            )?;
        }
    }

    writeln!(o, "\n== deny reasons")?;
    for d in &r.deny_reasons {
        writeln!(o, "{:>8}  {}", d.count, d.reason)?;
    }
    Ok(())
}

fn usage(o: &mut String, label: &str, u: &Usage) -> std::fmt::Result {
    if u.granted.is_empty() && u.ignored.is_empty() {
        return Ok(());
    }
    write!(o, "    {label}: granted [{}]", u.granted.join(" "))?;
    match &u.needed {
        Some(n) => write!(o, ", needed [{}]", n.join(" "))?,
        None => write!(o, ", needed unknown")?,
    }
    if !u.unused.is_empty() {
        let names: Vec<&str> = u.unused.iter().map(|x| x.name.as_str()).collect();
        write!(o, ", UNUSED [{}]", names.join(" "))?;
    }
    if !u.ignored.is_empty() {
        write!(o, ", ignored [{}]", u.ignored.join(" "))?;
    }
    writeln!(o)
}
