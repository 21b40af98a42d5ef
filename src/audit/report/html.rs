//! `--format html`: one self-contained page for a security team. Inline CSS and inline SVG
//! charts only: no script, no font, no image, nothing fetched (a strict
//! `Content-Security-Policy` meta tag says so to the browser too). Every value from the audit
//! trail is HTML-escaped: client ids and reasons are data written by whoever held a token.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::model::{Principal, Report};

const CSS: &str = "
:root{--fg:#1d2430;--muted:#5b6675;--line:#d9dee5;--bg:#f6f7f9;--card:#fff;--allow:#2f855a;
--deny:#c53030;--high:#c53030;--medium:#c05621;--low:#2b6cb0;--used:#c6f6d5;--unused:#fed7d7}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;
color:var(--fg);background:var(--bg)}header{background:#1d2430;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c8d0da}
main{padding:20px 28px;max-width:1280px}section{background:var(--card);border:1px solid var(--line);
border-radius:8px;padding:16px 20px;margin:0 0 18px}h2{font-size:16px;margin:0 0 12px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{flex:1 1 150px;border:1px solid var(--line);
border-radius:6px;padding:10px 14px}.card b{display:block;font-size:22px}.card span{color:var(--muted)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:6px 8px;
border-bottom:1px solid var(--line);vertical-align:top}th{font-weight:600;color:var(--muted);font-size:12px}
.sev{display:inline-block;white-space:nowrap;overflow-wrap:normal;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.sev.high{background:var(--high)}.sev.medium{background:var(--medium)}.sev.low{background:var(--low)}
code{font:12px ui-monospace,monospace;background:#eef1f5;padding:1px 4px;border-radius:3px}
.muted{color:var(--muted)}.bad{color:var(--deny);font-weight:600}.ok{color:var(--allow);font-weight:600}
.charts{display:flex;gap:18px;flex-wrap:wrap}.charts>div{flex:1 1 480px}
td.used{background:var(--used);text-align:center}td.unused{background:var(--unused);text-align:center;font-weight:700}
td.none{text-align:center;color:#b7bec8}th.rot{white-space:nowrap}.score{font-weight:700}
ul{margin:4px 0;padding-left:18px}td{overflow-wrap:anywhere}td.ev{font-size:12px;min-width:190px}
";

pub fn render(r: &Report) -> String {
    let mut o = String::with_capacity(64 * 1024);
    // `write!` to a String cannot fail.
    let _ = page(&mut o, r);
    o
}

fn page(o: &mut String, r: &Report) -> std::fmt::Result {
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    o.push_str("<title>fapi-guard least-privilege report</title><style>");
    o.push_str(CSS);
    o.push_str("</style></head><body>");
    write!(
        o,
        "<header><h1>Least-privilege report</h1><p>Window {} → {} · policies: {}</p></header><main>",
        esc(&r.window.since),
        esc(&r.window.as_of),
        if r.policies.revisions.is_empty() {
            "none given (needs unknown)".to_owned()
        } else {
            esc(&r.policies.revisions.join(", "))
        }
    )?;
    summary(o, r)?;
    findings(o, r)?;
    matrix(o, r)?;
    charts(o, r)?;
    principals(o, r)?;
    integrity(o, r)?;
    o.push_str("</main></body></html>\n");
    Ok(())
}

fn summary(o: &mut String, r: &Report) -> std::fmt::Result {
    let high = r.findings.iter().filter(|f| f.severity == "high").count();
    let clients = r.principals.iter().filter(|p| p.kind == "client").count();
    let dormant = r.principals.iter().filter(|p| p.dormant).count();
    o.push_str("<section><h2>Summary</h2><div class=\"cards\">");
    let cards: [(String, &str); 6] = [
        (
            r.totals.decisions_in_window.to_string(),
            "decisions in window",
        ),
        (
            format!("{} / {}", r.totals.allows, r.totals.denies),
            "allowed / denied",
        ),
        (clients.to_string(), "clients"),
        (dormant.to_string(), "dormant"),
        (format!("{} ({high} high)", r.findings.len()), "findings"),
        (r.integrity.untrusted_files.to_string(), "untrusted files"),
    ];
    for (v, label) in cards {
        write!(
            o,
            "<div class=\"card\"><b>{}</b><span>{label}</span></div>",
            esc(&v)
        )?;
    }
    o.push_str("</div></section>");
    Ok(())
}

fn integrity(o: &mut String, r: &Report) -> std::fmt::Result {
    o.push_str("<section><h2>Integrity of the audit trail</h2>");
    if r.integrity.untrusted_files > 0 {
        write!(
            o,
            "<p class=\"bad\">{} file(s) could not be trusted: their records are not counted.</p>",
            r.integrity.untrusted_files
        )?;
    } else {
        o.push_str("<p class=\"ok\">Every file verified; chains below.</p>");
    }
    o.push_str("<table><tr><th>file</th><th>status</th><th>records</th><th>seq</th><th>chain / reason</th></tr>");
    for f in &r.integrity.files {
        let seq = match (f.first_seq, f.last_seq) {
            (Some(a), Some(b)) => format!("{a}–{b}"),
            _ => "–".into(),
        };
        let note = match (&f.reason, f.chain) {
            (Some(reason), _) => esc(reason),
            (None, Some(c)) => {
                let ch = &r.integrity.chains[c];
                format!("chain {} (starts at {})", c + 1, ch.starts)
            }
            _ => String::new(),
        };
        let class = if f.status == "untrusted" { "bad" } else { "" };
        write!(
            o,
            "<tr><td><code>{}</code></td><td class=\"{class}\">{}</td><td>{}</td><td>{seq}</td><td>{note}</td></tr>",
            esc(&f.path),
            f.status,
            f.records
        )?;
    }
    o.push_str("</table></section>");
    Ok(())
}

fn findings(o: &mut String, r: &Report) -> std::fmt::Result {
    write!(o, "<section><h2>Findings ({})</h2>", r.findings.len())?;
    if r.findings.is_empty() {
        o.push_str("<p class=\"ok\">No findings.</p></section>");
        return Ok(());
    }
    o.push_str("<table><tr><th>#</th><th>severity</th><th>finding</th><th>who</th><th>details</th><th>evidence</th></tr>");
    for f in &r.findings {
        let items: String = f
            .items
            .iter()
            .map(|i| format!("<li>{}</li>", esc(i)))
            .collect();
        let e = &f.evidence;
        write!(
            o,
            "<tr><td>{}</td><td><span class=\"sev {}\">{}</span></td><td><code>{}</code><br>{}</td>\
             <td>{} <b>{}</b></td><td><ul>{items}</ul></td><td class=\"ev\">{} record(s) \
             <span class=\"muted\">{} → {}</span><br>e.g. <code>{}</code></td></tr>",
            f.rank,
            f.severity,
            f.severity,
            f.code,
            esc(&f.summary),
            f.principal_kind,
            esc(&f.principal),
            e.count,
            short(e.first_seen.as_deref()),
            short(e.last_seen.as_deref()),
            esc(e.example_interaction_id.as_deref().unwrap_or("–"))
        )?;
    }
    o.push_str("</table></section>");
    Ok(())
}

fn charts(o: &mut String, r: &Report) -> std::fmt::Result {
    o.push_str("<section><h2>Activity</h2><div class=\"charts\"><div>");
    // Calls over time: stacked bars, allow below deny.
    let (w, h, pad) = (560.0_f64, 200.0_f64, 30.0_f64);
    let n = r.timeline.buckets.len().max(1) as f64;
    let max = r
        .timeline
        .buckets
        .iter()
        .map(|b| b.allow + b.deny)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let bw = (w - pad * 2.0) / n;
    write!(
        o,
        "<svg role=\"img\" aria-label=\"Calls over time\" viewBox=\"0 0 {w} {h}\" width=\"100%\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>Calls over time ({} s per bar)</title>",
        r.timeline.bucket_seconds
    )?;
    let base = h - pad;
    write!(
        o,
        "<line x1=\"{pad}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#d9dee5\"/>",
        w - pad
    )?;
    for (i, b) in r.timeline.buckets.iter().enumerate() {
        let x = pad + i as f64 * bw + 1.0;
        let ha = b.allow as f64 / max * (h - pad * 2.0);
        let hd = b.deny as f64 / max * (h - pad * 2.0);
        if b.allow > 0 {
            write!(
                o,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{ha:.1}\" fill=\"#2f855a\"><title>{}: {} allowed</title></rect>",
                base - ha,
                (bw - 2.0).max(1.0),
                esc(&b.start),
                b.allow
            )?;
        }
        if b.deny > 0 {
            write!(
                o,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{hd:.1}\" fill=\"#c53030\"><title>{}: {} denied</title></rect>",
                base - ha - hd,
                (bw - 2.0).max(1.0),
                esc(&b.start),
                b.deny
            )?;
        }
    }
    let first = r
        .timeline
        .buckets
        .first()
        .map(|b| b.start.get(..10).unwrap_or(""));
    let last = r
        .timeline
        .buckets
        .last()
        .map(|b| b.start.get(..10).unwrap_or(""));
    write!(
        o,
        "<text x=\"{pad}\" y=\"{}\" font-size=\"11\" fill=\"#5b6675\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#5b6675\" text-anchor=\"end\">{}</text>\
         <text x=\"{pad}\" y=\"16\" font-size=\"11\" fill=\"#5b6675\">max {} per bar · \
         <tspan fill=\"#2f855a\">■ allowed</tspan> <tspan fill=\"#c53030\">■ denied</tspan></text></svg>",
        h - 10.0,
        esc(first.unwrap_or("")),
        w - pad,
        h - 10.0,
        esc(last.unwrap_or("")),
        max as u64
    )?;
    o.push_str("<p class=\"muted\">Calls over time</p></div><div>");
    // Deny reasons: horizontal bars.
    let reasons: Vec<_> = r.deny_reasons.iter().take(12).collect();
    let rh = 22.0;
    let height = (reasons.len().max(1) as f64) * rh + 20.0;
    let rmax = reasons.iter().map(|d| d.count).max().unwrap_or(1).max(1) as f64;
    write!(
        o,
        "<svg role=\"img\" aria-label=\"Deny reasons\" viewBox=\"0 0 {w} {height}\" width=\"100%\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>Deny reasons by count</title>"
    )?;
    if reasons.is_empty() {
        o.push_str("<text x=\"10\" y=\"20\" font-size=\"12\" fill=\"#5b6675\">no denials</text>");
    }
    for (i, d) in reasons.iter().enumerate() {
        let y = 10.0 + i as f64 * rh;
        let bar = d.count as f64 / rmax * (w - 260.0);
        write!(
            o,
            "<text x=\"200\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\" fill=\"#1d2430\">{}</text>\
             <rect x=\"208\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"#c53030\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#1d2430\">{}</text>",
            y + 14.0,
            esc(&d.reason),
            rh - 6.0,
            212.0 + bar,
            y + 14.0,
            d.count
        )?;
    }
    o.push_str("</svg><p class=\"muted\">Deny reasons</p></div></div></section>");
    Ok(())
}

/// Granted-vs-used matrix: one row per principal, one column per scope or consent permission
/// seen anywhere. ✓ granted and needed, ✗ granted and never needed, blank: not granted.
fn matrix(o: &mut String, r: &Report) -> std::fmt::Result {
    let scopes: BTreeSet<&str> = r
        .principals
        .iter()
        .flat_map(|p| p.scopes.granted.iter().map(String::as_str))
        .collect();
    let perms: BTreeSet<&str> = r
        .principals
        .iter()
        .flat_map(|p| p.consent_permissions.granted.iter().map(String::as_str))
        .collect();
    o.push_str("<section><h2>Granted vs used</h2><p class=\"muted\">✓ granted and needed by a route called · \
                ✗ granted, never needed · blank: not granted · ? needs unknown (no policies)</p>");
    o.push_str("<table><tr><th>principal</th><th>score</th>");
    for s in &scopes {
        write!(o, "<th class=\"rot\">scope<br><code>{}</code></th>", esc(s))?;
    }
    for p in &perms {
        write!(
            o,
            "<th class=\"rot\">consent<br><code>{}</code></th>",
            esc(p)
        )?;
    }
    o.push_str("</tr>");
    for p in &r.principals {
        write!(
            o,
            "<tr><td>{} <b>{}</b>{}</td><td class=\"score\">{}</td>",
            p.kind,
            esc(&p.id),
            if p.dormant {
                " <span class=\"sev high\">dormant</span>"
            } else {
                ""
            },
            p.score
        )?;
        for s in &scopes {
            cell(o, p, s, false);
        }
        for s in &perms {
            cell(o, p, s, true);
        }
        o.push_str("</tr>");
    }
    o.push_str("</table></section>");
    Ok(())
}

fn cell(o: &mut String, p: &Principal, name: &str, perm: bool) {
    let u = if perm {
        &p.consent_permissions
    } else {
        &p.scopes
    };
    if !u.granted.iter().any(|g| g == name) {
        o.push_str("<td class=\"none\"></td>");
    } else if u.needed.is_none() {
        o.push_str("<td class=\"none\">?</td>");
    } else if u.used.iter().any(|g| g == name) {
        o.push_str("<td class=\"used\">✓</td>");
    } else {
        o.push_str("<td class=\"unused\">✗</td>");
    }
}

fn principals(o: &mut String, r: &Report) -> std::fmt::Result {
    o.push_str(
        "<section><h2>Clients and actors</h2><table><tr><th>principal</th><th>calls</th>\
                <th>allow / deny</th><th>last seen</th><th>routes</th><th>deny reasons</th>\
                <th>max token lifetime</th><th>unbound</th><th>delegation</th></tr>",
    );
    for p in &r.principals {
        let routes: String = p
            .routes
            .iter()
            .map(|rt| {
                format!(
                    "<li><code>{}/{}</code> {}✓ {}✗</li>",
                    esc(&rt.api),
                    esc(&rt.route),
                    rt.allows,
                    rt.denies
                )
            })
            .collect();
        let reasons: String = p
            .deny_reasons
            .iter()
            .map(|d| {
                format!(
                    "<li><code>{}</code> ×{}</li>",
                    esc(&d.reason),
                    d.evidence.count
                )
            })
            .collect();
        let t = &p.tokens;
        write!(
            o,
            "<tr><td>{} <b>{}</b></td><td>{}{}</td><td>{} / {}</td><td>{}</td><td><ul>{routes}</ul></td>\
             <td><ul>{reasons}</ul></td><td>{}</td><td>{} ({:.0}%)</td><td>depth {}{}</td></tr>",
            p.kind,
            esc(&p.id),
            p.calls,
            if p.calls_before_window > 0 {
                format!(
                    " <span class=\"muted\">(+{} before)</span>",
                    p.calls_before_window
                )
            } else {
                String::new()
            },
            p.allows,
            p.denies,
            short(p.seen.last_seen.as_deref()),
            t.max_lifetime_seconds
                .map_or("–".to_owned(), |s| format!("{s} s")),
            t.unbound.count,
            t.unbound_share * 100.0,
            t.max_delegation_depth,
            if p.delegation_peers.is_empty() {
                String::new()
            } else {
                let role = if p.kind == "actor" {
                    format!(
                        " ({} as current actor, {} as earlier hop)",
                        p.calls_as_current_actor, p.calls_as_prior_actor
                    )
                } else {
                    String::new()
                };
                format!(
                    "<br><span class=\"muted\">{}{role}</span>",
                    esc(&p.delegation_peers.join(", "))
                )
            }
        )?;
    }
    o.push_str("</table></section>");
    Ok(())
}

/// `2026-11-24T06:00:00.123456Z` → `2026-11-24 06:00` for the tables (JSON keeps the rest).
fn short(ts: Option<&str>) -> String {
    match ts {
        Some(t) if t.len() >= 16 => esc(&t[..16].replacen('T', " ", 1)),
        Some(t) => esc(t),
        None => "–".into(),
    }
}

/// HTML-escapes text for element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
