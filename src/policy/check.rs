//! `fapi-guard policy check`: every error of every policy and test file at once, plus warnings
//! for policies that are legal but probably wrong.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{compile, lint, testing};
use crate::config::InvalidConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

/// One finding, located like a load error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub at: InvalidConfig,
}

impl std::fmt::Display for Diagnostic {
    /// Errors read exactly like load errors (`FILE:LINE:COL: FIELD: message`); warnings put
    /// `warning:` after the location.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.severity {
            Severity::Error => write!(f, "{}", self.at),
            Severity::Warning => {
                let a = &self.at;
                write!(f, "{}", a.file.display())?;
                if let (Some(l), Some(c)) = (a.line, a.column) {
                    write!(f, ":{l}:{c}")?;
                }
                write!(f, ": warning: {}: {}", a.field, a.message)
            }
        }
    }
}

/// What `policy check` found.
#[derive(Debug, Default)]
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
    /// `(apis, routes, revision)` when the policies compiled.
    pub compiled: Option<(usize, usize, String)>,
    pub test_files: usize,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }
    fn count(&self, s: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == s).count()
    }

    /// One line per finding, then a summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.to_string());
            out.push('\n');
        }
        match &self.compiled {
            Some((apis, routes, rev)) if self.errors() == 0 => out.push_str(&format!(
                "ok: {apis} api(s), {routes} route(s), {} test file(s), revision {rev}; {} warning(s)\n",
                self.test_files,
                self.warnings()
            )),
            _ => out.push_str(&format!(
                "{} error(s), {} warning(s)\n",
                self.errors(),
                self.warnings()
            )),
        }
        out
    }

    /// For CI annotations: `{"errors":N,"warnings":N,"diagnostics":[{severity,file,line,column,field,message}]}`.
    pub fn json(&self) -> serde_json::Value {
        let diags: Vec<_> = self
            .diagnostics
            .iter()
            .map(|d| {
                json!({
                    "severity": d.severity.as_str(),
                    "file": d.at.file.display().to_string(),
                    "line": d.at.line,
                    "column": d.at.column,
                    "field": d.at.field,
                    "message": d.at.message,
                })
            })
            .collect();
        json!({"errors": self.errors(), "warnings": self.warnings(), "diagnostics": diags})
    }
}

/// Checks the policy files and `*_test.yaml` files under `paths` (files or directories).
pub fn check(paths: &[PathBuf]) -> Report {
    let mut errors = Vec::new();
    let (tests, policies): (Vec<PathBuf>, Vec<PathBuf>) = paths
        .iter()
        .cloned()
        .partition(|p| p.is_file() && testing::is_test_file(p));
    let mut test_files = testing::test_files(
        &paths
            .iter()
            .filter(|p| p.is_dir())
            .cloned()
            .collect::<Vec<_>>(),
    );
    test_files.extend(tests);
    let mut sources = Vec::new();
    for p in super::policy_files(&policies, &mut errors) {
        match std::fs::read_to_string(&p) {
            Ok(src) => sources.push((p, src)),
            Err(e) => errors.push(InvalidConfig::new(&p, "", format!("cannot read: {e}"))),
        }
    }
    let compiled = compile::compile_all(&sources);
    let warnings = lint::warnings(&sources, &compiled);
    let mut report = Report {
        test_files: test_files.len(),
        ..Report::default()
    };
    match compiled.result {
        Ok(set) => {
            report.compiled = Some((
                set.apis().len(),
                set.routes().len(),
                set.revision().to_owned(),
            ));
        }
        Err(e) => errors.extend(e),
    }
    for t in &test_files {
        errors.extend(testing::check_file(t));
    }
    let mut diags: Vec<Diagnostic> = errors
        .into_iter()
        .map(|at| Diagnostic {
            severity: Severity::Error,
            at,
        })
        .chain(warnings.into_iter().map(|at| Diagnostic {
            severity: Severity::Warning,
            at,
        }))
        .collect();
    diags.sort_by(|a, b| key(&a.at).cmp(&key(&b.at)));
    report.diagnostics = diags;
    report
}

fn key(e: &InvalidConfig) -> (&Path, usize, usize) {
    (&e.file, e.line.unwrap_or(0), e.column.unwrap_or(0))
}
