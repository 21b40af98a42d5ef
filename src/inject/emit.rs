//! YAML text for `inject`'s output. serde_yaml writes YAML 1.2, where `on`, `yes` or `0755` are
//! plain strings; kubectl and most Kubernetes tooling read YAML 1.1 (sigs.k8s.io/yaml), where
//! the same unquoted text is a boolean or an octal number. A ConfigMap value `"yes"` would come
//! back as `true`. So strings are written plain only when every YAML version reads them as the
//! same string, double-quoted (JSON escapes, valid YAML) otherwise, and as literal blocks when
//! they span lines (a config file in a ConfigMap stays readable).

use serde_yaml::Value;

/// One document, without the `---` separator.
pub fn document(v: &Value) -> Result<String, String> {
    let mut out = String::new();
    match v {
        Value::Mapping(m) if !m.is_empty() => mapping(m, 0, false, &mut out)?,
        Value::Sequence(s) if !s.is_empty() => sequence(s, 0, false, &mut out)?,
        other => {
            out.push_str(&scalar(other)?);
            out.push('\n');
        }
    }
    Ok(out)
}

fn mapping(
    m: &serde_yaml::Mapping,
    indent: usize,
    inline_first: bool,
    out: &mut String,
) -> Result<(), String> {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(indent, out);
        }
        match k {
            Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_) => {
                return Err("a mapping key that is not a scalar".to_owned());
            }
            _ => out.push_str(&scalar(k)?),
        }
        out.push(':');
        value(v, indent, indent + 2, out)?;
    }
    Ok(())
}

fn sequence(
    s: &[Value],
    indent: usize,
    inline_first: bool,
    out: &mut String,
) -> Result<(), String> {
    for (i, item) in s.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(indent, out);
        }
        out.push('-');
        match item {
            Value::Mapping(m) if !m.is_empty() => {
                out.push(' ');
                mapping(m, indent + 2, true, out)?;
            }
            Value::Sequence(s) if !s.is_empty() => {
                out.push(' ');
                sequence(s, indent + 2, true, out)?;
            }
            other => value(other, indent, indent + 2, out)?,
        }
    }
    Ok(())
}

/// The value after `key:` or `-`. Nested sequences in a mapping sit at the key's indentation,
/// as kubectl writes them.
fn value(
    v: &Value,
    key_indent: usize,
    child_indent: usize,
    out: &mut String,
) -> Result<(), String> {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            mapping(m, child_indent, false, out)
        }
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            sequence(s, key_indent, false, out)
        }
        Value::String(s) if block_ok(s) => {
            out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                if !line.is_empty() {
                    pad(child_indent, out);
                    out.push_str(line);
                }
                out.push('\n');
            }
            Ok(())
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other)?);
            out.push('\n');
            Ok(())
        }
    }
}

fn scalar(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if plain_ok(s) => Ok(s.clone()),
        // A JSON string is a valid YAML double-quoted scalar.
        Value::String(s) => serde_json::to_string(s).map_err(|e| e.to_string()),
        Value::Mapping(m) if m.is_empty() => Ok("{}".to_owned()),
        Value::Sequence(s) if s.is_empty() => Ok("[]".to_owned()),
        other => serde_yaml::to_string(other)
            .map(|t| t.trim_end().to_owned())
            .map_err(|e| e.to_string()),
    }
}

/// A literal block keeps the text exactly: lines without carriage returns or trailing blanks,
/// a first line not starting with a space, at most one final newline.
fn block_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.ends_with("\n\n")
        && !s.starts_with([' ', '\n'])
        && s.split('\n').all(|l| !l.ends_with([' ', '\t']))
        && s.chars().all(|c| c == '\n' || !c.is_control() || c == '\t')
}

/// Plain (unquoted) only when YAML 1.1 and 1.2 both read it as this very string.
fn plain_ok(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "y", "yes", "n", "no", "on", "off", "true", "false", "null", "~",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    if SPECIAL.iter().any(|w| s.eq_ignore_ascii_case(w)) {
        return false;
    }
    // Anything that starts like a number (ints, floats, octal, hex, sexagesimal 1:20, .5,
    // .inf, and YAML 1.1's lax floats such as 1.4.2) is quoted rather than reasoned about.
    if first.is_ascii_digit() {
        return false;
    }
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@+=".contains(c))
        && !s.ends_with(':')
        && !s.contains(": ")
        && !s.contains(" #")
        && !matches!(first, '-' | ':' | '@' | '=' | '.' | '+')
}

fn pad(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_ambiguous_ones_are_quoted() {
        let cases: &[(&str, bool)] = &[
            ("on", false),
            ("yes", false),
            ("No", false),
            ("null", false),
            ("~", false),
            ("8080", false),
            ("0755", false),
            ("1e3", false),
            ("0x1F", false),
            ("1_000", false),
            ("1:20", false),
            (".5", false),
            (".inf", false),
            ("-1", false),
            ("", false),
            ("a: b", false),
            ("#x", false),
            ("- x", false),
            ("*ref", false),
            ("&a", false),
            ("100m", false),
            ("64Mi", false),
            ("Always", true),
            ("registry.bank.example/api:1.4.2", true),
            ("1.4.2", false),
            ("/etc/fapi-guard/config", true),
            ("127.0.0.1:8080", false),
            ("fapi-guard.io/inject", true),
            ("RuntimeDefault", true),
            ("0 2 * * *", false),
        ];
        for (s, plain) in cases {
            assert_eq!(plain_ok(s), *plain, "{s:?}");
            let v = Value::String((*s).to_owned());
            let text = scalar(&v).expect("scalar");
            let back: Value = serde_yaml::from_str(&text).expect("parse");
            assert_eq!(back, v, "{s:?} → {text}");
        }
    }

    #[test]
    fn documents_round_trip() {
        let src = "a:\n  b: [1, 2.5, true, null, 'on', '']\n  c: \"line1\\nline2\\n\"\n  d: \"no newline\\nat end\"\n  e: {}\n  f: []\n  g:\n  - {x: 1, y: [a, [b, c]]}\n  - - nested\n  - \" lead\\nspace\"\n  h: \"tail \\nblank\"\n";
        let v: Value = serde_yaml::from_str(src).expect("yaml");
        let text = document(&v).expect("emit");
        let back: Value = serde_yaml::from_str(&text).expect(&text);
        assert_eq!(back, v, "{text}");
        assert!(text.contains("c: |\n    line1\n    line2\n"), "{text}");
        assert!(text.contains("d: |-\n"), "{text}");
    }
}
