//! What ships is self-contained: a reader has the repository, not the design notes or the issue
//! tracker it was built from. README, SECURITY.md, `docs/`, `deploy/`, `policies/` (the schema
//! included) and every `--help` page must not send the reader to "spec §5" or "issue 9".
//! Standards stay citable ("RFC 9449 §4.3", "FAPI 2.0 §5.3.4").

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use fapi_guard::cli::Cli;

/// Outside references in `text`, as `(line, the offending words)`.
fn outside_references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let lower = line.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !(c.is_alphanumeric() || c == '§' || c == '#'))
            .filter(|w| !w.is_empty())
            .collect();
        for (i, w) in words.iter().enumerate() {
            let next = words.get(i + 1).copied().unwrap_or("");
            let hit = match *w {
                // "spec §5", "spec§5", "Spec §5/§6"
                "spec" | "spec's" => next.starts_with('§'),
                s if s.starts_with("spec§") => true,
                // "issue 9", "issue #9", "issues 9 and 10", "#9" after "issue"
                "issue" | "issues" => {
                    let n = next.trim_start_matches('#');
                    !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
                }
                _ => false,
            };
            if hit {
                found.push((n + 1, format!("{w} {next}")));
            }
        }
        // "the spec was silent", "see the spec": a document the reader does not have.
        for phrase in [
            "the spec ",
            "the spec,",
            "the spec.",
            "the spec)",
            "spec section",
        ] {
            if lower.contains(phrase) || lower.ends_with("the spec") {
                found.push((n + 1, phrase.trim().to_owned()));
                break;
            }
        }
    }
    found
}

fn json_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| json_strings(x, out)),
        _ => {}
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn shipped_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("SECURITY.md")];
    for dir in ["docs", "deploy", "policies"] {
        files_under(&root.join(dir), &mut files);
    }
    files
}

#[test]
fn the_matcher_finds_outside_references_and_spares_standards() {
    let bad = [
        "Metric names: spec §9 only",
        "# Spec §5/§6: JWKS down",
        "(spec \u{a7}8)",
        "see spec§3",
        "the least-privilege report (issue 16).",
        "Issue 9 defect 12: the demo",
        "fixed in issue #42",
        "These are places where the spec was silent.",
    ];
    for b in bad {
        assert!(!outside_references(b).is_empty(), "missed: {b}");
    }
    let fine = [
        "RFC 9449 §4.3 step 9",
        "FAPI 2.0 §5.3.4 (sender-constrained tokens)",
        "RFC 6585 §5 requires 431",
        "Do not open a public issue for a vulnerability.",
        "the pod spec: containers, volumes",
        "spec:\n  replicas: 2",
        "issues the token; issue 3 tokens per client",
    ];
    for f in &fine[..6] {
        assert!(outside_references(f).is_empty(), "false alarm: {f}");
    }
    // A number after "issue" reads as a tracker reference whatever was meant: write it otherwise.
    assert!(!outside_references(fine[6]).is_empty());
}

#[test]
fn shipped_files_have_no_outside_references() {
    let mut problems = Vec::new();
    let files = shipped_files();
    assert!(
        files.len() > 20,
        "the walk found the shipped files: {files:?}"
    );
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // images (docs/audit-report.png)
        };
        for (line, what) in outside_references(&text) {
            problems.push(format!("{}:{line}: {what}", path.display()));
        }
        // JSON may hide a `§` as `\u00a7`: check its strings as a reader sees them too.
        if path.extension().is_some_and(|e| e == "json") {
            let value: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut strings = Vec::new();
            json_strings(&value, &mut strings);
            for (_, what) in outside_references(&strings.join("\n")) {
                problems.push(format!("{}: a string says {what}", path.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "references to documents the reader does not have:\n{}",
        problems.join("\n")
    );
}

#[test]
fn help_pages_have_no_outside_references() {
    fn walk(cmd: &mut clap::Command, path: String, out: &mut Vec<String>, pages: &mut usize) {
        *pages += 1;
        let help = cmd.render_long_help().to_string();
        for (line, what) in outside_references(&help) {
            out.push(format!("{path} --help, line {line}: {what}"));
        }
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        for name in names {
            if let Some(sub) = cmd.find_subcommand_mut(&name) {
                walk(sub, format!("{path} {name}"), out, pages);
            }
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    let (mut problems, mut pages) = (Vec::new(), 0);
    walk(&mut cmd, "fapi-guard".to_owned(), &mut problems, &mut pages);
    assert!(pages > 10, "every subcommand's help was rendered ({pages})");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
