//! A secret read from a file (admin bearer token, client secrets): never printed, compared in
//! constant time.
//!
//! `Debug` and `Display` print `<redacted>`, so a secret inside a config struct that derives
//! `Debug` (or a `tracing` field) cannot leak. Equality compares SHA-256 digests of both sides
//! with `aws_lc_rs::constant_time::verify_slices_are_equal`: the digests always have the same
//! length, so neither the contents nor the length of the secret leak through timing.

use std::fmt;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};

/// Shortest secret accepted from a file: 16 characters (a random token of at least ~96 bits).
pub const MIN_LEN: usize = 16;

/// A secret value. Cloning copies the bytes; there is no accessor that returns them as text.
#[derive(Clone)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Wraps `bytes`; refuses a secret shorter than [`MIN_LEN`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, String> {
        let bytes = bytes.into();
        if bytes.len() < MIN_LEN {
            return Err(format!("secret must be at least {MIN_LEN} characters"));
        }
        Ok(Self(bytes.into_boxed_slice()))
    }

    /// Reads a secret file; surrounding whitespace (a trailing newline from `echo` or a
    /// Kubernetes Secret mount) is not part of the secret. Errors never contain the contents.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::new(bytes.trim_ascii())
    }

    /// Whether `candidate` equals the secret, in time independent of where they differ and of
    /// the secret's length.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let a = digest(&SHA256, &self.0);
        let b = digest(&SHA256, candidate);
        verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok()
    }

    /// The raw bytes, for the one place that must send the secret (client authentication).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "correct-horse-battery-staple";

    #[test]
    fn never_printed() {
        let s = Secret::new(S).expect("long enough");
        for shown in [format!("{s:?}"), format!("{s}"), format!("{:?}", Some(&s))] {
            assert!(!shown.contains("horse"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }

    #[test]
    fn matches_only_the_same_bytes() {
        let s = Secret::new(S).expect("long enough");
        let cases: [(&str, &[u8], bool); 6] = [
            ("same", S.as_bytes(), true),
            ("empty", b"", false),
            ("prefix", &S.as_bytes()[..S.len() - 1], false),
            ("longer", b"correct-horse-battery-staple!", false),
            ("one byte differs", b"correct-horse-battery-stapLe", false),
            ("case", b"CORRECT-HORSE-BATTERY-STAPLE", false),
        ];
        for (name, candidate, want) in cases {
            assert_eq!(s.matches(candidate), want, "{name}");
        }
        assert_eq!(s, Secret::new(S).expect("long enough"));
        assert_ne!(s, Secret::new("another-secret-of-16").expect("long enough"));
    }

    #[test]
    fn short_secrets_refused_and_files_trimmed() {
        assert!(Secret::new("too-short").is_err());
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("token");
        std::fs::write(&p, format!("  {S}\n")).expect("write");
        let s = Secret::from_file(&p).expect("read");
        assert!(s.matches(S.as_bytes()));
        std::fs::write(&p, "short\n").expect("write");
        let e = Secret::from_file(&p).expect_err("short");
        assert!(!e.contains("short\n") && e.contains("at least 16"), "{e}");
        let e = Secret::from_file(&dir.path().join("missing")).expect_err("missing");
        assert!(e.contains("cannot read"), "{e}");
    }
}
