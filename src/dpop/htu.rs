//! `htu` comparison (RFC 9449 §4.3 step 8): both the proof's `htu` and the URI the proxy serves
//! are reduced to one canonical form with the syntax-based and scheme-based normalizations of
//! RFC 3986 §6.2.2–6.2.3, then compared byte for byte.
//!
//! Dot segments are deliberately *not* removed: the proxy refuses such request paths anyway
//! (spec §5), and a proof naming `/a/../b` is then simply a mismatch (fail closed).

/// Longer `htu` values are refused outright; no real endpoint URI comes close.
const MAX_URI_LEN: usize = 4096;

/// Canonical form of an absolute http(s) URI without query and fragment, or `None` when the
/// input is not one (other scheme, userinfo, bad port, bad percent-encoding, control bytes).
pub fn normalize(uri: &str) -> Option<String> {
    if uri.len() > MAX_URI_LEN || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    // RFC 9449 §4.2: htu is "without query and fragment parts"; §4.3 step 8 ignores them.
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    let uri = &uri[..end];

    let (scheme, rest) = uri.split_once("://")?;
    // RFC 3986 §6.2.2.1: scheme is case-insensitive.
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    // Credentials in a URI are deprecated (RFC 3986 §3.2.1) and have no place in htu.
    if authority.contains('@') {
        return None;
    }
    let (host, port) = split_host_port(authority)?;
    // RFC 3986 §6.2.2.1: host is case-insensitive. Percent-encoded reg-names are refused
    // rather than normalized: they are legal but never used by an API origin.
    if !valid_host(host) {
        return None;
    }
    let mut out = String::with_capacity(uri.len() + 1);
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host.to_ascii_lowercase());
    // RFC 3986 §6.2.3: an empty port or the scheme's default port is omitted.
    if let Some(port) = port
        && port != default_port
    {
        out.push(':');
        out.push_str(&port.to_string());
    }
    // RFC 3986 §6.2.3: an empty path is equivalent to "/".
    if path.is_empty() {
        out.push('/');
    } else {
        normalize_path(path, &mut out)?;
    }
    Some(out)
}

/// Splits `host[:port]`, keeping IPv6 literals (`[::1]:8443`) intact. An empty port (`host:`)
/// is the same as no port (RFC 3986 §6.2.3).
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let port_sep = if authority.starts_with('[') {
        let close = authority.find(']')?;
        match &authority[close + 1..] {
            "" => None,
            s if s.starts_with(':') => Some(close + 1),
            _ => return None,
        }
    } else {
        authority.rfind(':')
    };
    let Some(sep) = port_sep else {
        return Some((authority, None));
    };
    let (host, port) = (&authority[..sep], &authority[sep + 1..]);
    if port.is_empty() {
        return Some((host, None));
    }
    if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, Some(port.parse().ok()?)))
}

/// RFC 3986 §6.2.2.1 (percent-encoding hex digits upper-case) and §6.2.2.2 (decode
/// percent-encoded unreserved characters). Invalid `%` sequences make the URI invalid.
fn normalize_path(path: &str, out: &mut String) -> Option<()> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hi = hex_value(*bytes.get(i + 1)?)?;
        let lo = hex_value(*bytes.get(i + 2)?)?;
        let decoded = hi << 4 | lo;
        if is_unreserved(decoded) {
            out.push(char::from(decoded));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(hi)]));
            out.push(char::from(HEX_UPPER[usize::from(lo)]));
        }
        i += 3;
    }
    Some(())
}

/// RFC 3986 §3.2.2: an IP literal in brackets, or a reg-name / IPv4 address of unreserved and
/// sub-delim characters (no percent-encoding, see above).
fn valid_host(host: &str) -> bool {
    if let Some(literal) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !literal.is_empty()
            && literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| is_unreserved(b) || b"!$&'()*+,;=".contains(&b))
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        let cases = [
            (
                "identity",
                "https://api.example/accounts",
                "https://api.example/accounts",
            ),
            (
                "query dropped",
                "https://api.example/a?x=1&y=2",
                "https://api.example/a",
            ),
            (
                "fragment dropped",
                "https://api.example/a#frag",
                "https://api.example/a",
            ),
            (
                "query then fragment",
                "https://api.example/a?q#f",
                "https://api.example/a",
            ),
            (
                "scheme case",
                "HTTPS://api.example/a",
                "https://api.example/a",
            ),
            (
                "host case",
                "https://API.Example/a",
                "https://api.example/a",
            ),
            (
                "path case kept",
                "https://api.example/Accounts",
                "https://api.example/Accounts",
            ),
            (
                "https default port",
                "https://api.example:443/a",
                "https://api.example/a",
            ),
            (
                "http default port",
                "http://api.example:80/a",
                "http://api.example/a",
            ),
            (
                "https on 80 kept",
                "https://api.example:80/a",
                "https://api.example:80/a",
            ),
            (
                "other port kept",
                "https://api.example:8443/a",
                "https://api.example:8443/a",
            ),
            (
                "port leading zero",
                "https://api.example:0443/a",
                "https://api.example/a",
            ),
            (
                "empty port",
                "https://api.example:/a",
                "https://api.example/a",
            ),
            ("empty path", "https://api.example", "https://api.example/"),
            (
                "empty path with query",
                "https://api.example?x",
                "https://api.example/",
            ),
            (
                "empty path with port",
                "https://api.example:443",
                "https://api.example/",
            ),
            (
                "hex upper-cased",
                "https://api.example/a%2fb",
                "https://api.example/a%2Fb",
            ),
            (
                "unreserved decoded",
                "https://api.example/%7Euser/%41%2d",
                "https://api.example/~user/A-",
            ),
            (
                "reserved kept",
                "https://api.example/a%3Ab",
                "https://api.example/a%3Ab",
            ),
            ("ipv6", "https://[::1]:443/a", "https://[::1]/a"),
            ("ipv6 port", "https://[::1]:8443/a", "https://[::1]:8443/a"),
            (
                "dot segments kept",
                "https://api.example/a/../b",
                "https://api.example/a/../b",
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(normalize(input).as_deref(), Some(expected), "{name}");
        }
    }

    #[test]
    fn refuses() {
        let long = format!("https://api.example/{}", "a".repeat(MAX_URI_LEN));
        let cases = [
            ("relative", "/accounts"),
            ("no authority", "https:/accounts"),
            ("ftp", "ftp://api.example/a"),
            ("javascript", "javascript://x/a"),
            ("userinfo", "https://user:pw@api.example/a"),
            ("empty host", "https:///a"),
            ("empty host with port", "https://:443/a"),
            ("bad port", "https://api.example:44x/a"),
            ("port overflow", "https://api.example:65536/a"),
            ("long port", "https://api.example:000443/a"),
            ("truncated percent", "https://api.example/a%4"),
            ("bad percent", "https://api.example/a%zz"),
            ("percent in host", "https://api%2eexample/a"),
            ("space", "https://api.example/a b"),
            ("control", "https://api.example/a\tb"),
            ("non-ascii", "https://api.example/ä"),
            ("unclosed ipv6", "https://[::1/a"),
            ("junk after ipv6", "https://[::1]x/a"),
            ("unbracketed colons", "https://a:b:443/a"),
            ("too long", long.as_str()),
            ("empty", ""),
        ];
        for (name, input) in cases {
            assert_eq!(normalize(input), None, "{name}");
        }
    }

    #[test]
    fn equivalent_forms_compare_equal() {
        let expected = normalize("https://api.bank.example/accounts/acc-1");
        for variant in [
            "https://API.BANK.EXAMPLE:443/accounts/acc-1",
            "https://api.bank.example/accounts/acc-1?page=2",
            "https://api.bank.example/accounts/%61cc-1",
        ] {
            assert_eq!(normalize(variant), expected, "{variant}");
        }
        assert_ne!(
            normalize("http://api.bank.example/accounts/acc-1"),
            expected
        );
        assert_ne!(
            normalize("https://api.bank.example/accounts/acc-2"),
            expected
        );
    }
}
