//! "Did you mean …?" hints for misspelt keys, variants and reason codes.

/// The candidate closest to `word` by edit distance, when it is close enough to be a typo
/// (at most a third of the word's length, and at least one edit allowed).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Rewrites serde's "unknown field `scope`, expected one of `name`, `scopes`, …" (and the same
/// for variants) as "unknown field `scope`, did you mean `scopes`?" when one candidate is close;
/// other messages are returned unchanged.
pub fn explain(msg: &str) -> String {
    let Some(rest) = msg
        .strip_prefix("unknown field `")
        .map(|r| ("field", r))
        .or_else(|| {
            msg.strip_prefix("unknown variant `")
                .map(|r| ("variant", r))
        })
    else {
        return msg.to_owned();
    };
    let (kind, rest) = rest;
    let Some((word, expected)) = rest.split_once('`') else {
        return msg.to_owned();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match closest(word, candidates.iter().copied()) {
        Some(c) => format!("unknown {kind} `{word}`, did you mean `{c}`?"),
        None if candidates.is_empty() => format!("unknown {kind} `{word}`"),
        None => format!(
            "unknown {kind} `{word}`, expected one of {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_close_candidate_only() {
        assert_eq!(
            explain("unknown field `scope`, expected one of `name`, `scopes`, `path`"),
            "unknown field `scope`, did you mean `scopes`?"
        );
        assert_eq!(
            explain("unknown variant `dpopp`, expected one of `dpop`, `mtls`"),
            "unknown variant `dpopp`, did you mean `dpop`?"
        );
        assert_eq!(
            explain("unknown field `zzz`, expected `name` or `path`"),
            "unknown field `zzz`, expected one of `name`, `path`"
        );
        assert_eq!(explain("invalid type: string"), "invalid type: string");
        assert_eq!(
            closest("consent_revokd", ["consent_revoked", "consent_expired"]),
            Some("consent_revoked")
        );
        assert_eq!(closest("allow", ["consent_revoked"]), None);
    }
}
