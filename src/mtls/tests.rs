use super::*;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// What `parse_forwarded` returns.
type Outcome = Result<[u8; 32], ForwardedCertError>;

const VECTORS: &str = include_str!("../../tests/vectors/rfc-vectors.json");

struct Fixture {
    der: Vec<u8>,
    pem: String,
    thumb: [u8; 32],
}

/// A fresh certificate (rcgen) and its thumbprint computed here, not by the code under test.
fn fixture() -> Fixture {
    let certified =
        rcgen::generate_simple_self_signed(vec!["client.example".to_owned()]).expect("rcgen");
    let der = certified.cert.der().to_vec();
    let mut thumb = [0u8; 32];
    thumb.copy_from_slice(digest::digest(&digest::SHA256, &der).as_ref());
    Fixture {
        pem: certified.cert.pem(),
        der,
        thumb,
    }
}

fn rfc8705() -> (String, String) {
    let v: Value = serde_json::from_str(VECTORS).expect("vectors");
    let pem = v["rfc8705"]["appendix_a_certificate_pem"]
        .as_str()
        .expect("pem")
        .to_owned();
    let x5t = v["rfc8705"]["x5t#S256"].as_str().expect("x5t").to_owned();
    (pem, x5t)
}

fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn rfc8705_vector() {
    let (pem, x5t) = rfc8705();
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("valid PEM");
    assert_eq!(x5t_s256(der.as_ref()), x5t);
    assert_eq!(x5t, "A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0");
    let thumb = cert_thumbprint(der.as_ref());
    assert_eq!(URL_SAFE_NO_PAD.encode(thumb), x5t);
    assert_eq!(check_binding(Some(&thumb), &x5t), Ok(()));
    // The same certificate arriving through each forwarding format.
    #[rustfmt::skip] // one case per line reads as a table
    let cases = [
        ("pem urlencoded", url_encode(&pem), ForwardedFormat::PemUrlencoded),
        ("xfcc Cert", format!("By=spiffe://api;Cert=\"{}\"", url_encode(&pem)), ForwardedFormat::Xfcc),
        ("rfc9440", format!(":{}:", STANDARD.encode(der.as_ref())), ForwardedFormat::Rfc9440),
        // '+' is base64, not an encoded space: only %XX is decoded.
        ("pem with literal plus", pem.replace('\n', "%0A"), ForwardedFormat::PemUrlencoded),
    ];
    assert!(pem.contains('+'));
    for (name, value, format) in cases {
        assert_eq!(parse_forwarded(&value, format), Ok(thumb), "{name}");
    }
}

#[test]
fn binding_decisions() {
    let f = fixture();
    let other = fixture();
    let cnf = URL_SAFE_NO_PAD.encode(f.thumb);
    let cases = [
        ("same certificate", Some(&f.thumb), Ok(())),
        (
            "no certificate",
            None,
            Err(DenyReason::MtlsCertificateMissing),
        ),
        (
            "other certificate",
            Some(&other.thumb),
            Err(DenyReason::MtlsCertificateMismatch),
        ),
    ];
    for (name, cert, expected) in cases {
        assert_eq!(check_binding(cert, &cnf), expected, "{name}");
    }
    assert!(
        !thumbprint_matches(&f.thumb, &format!("{cnf}=")),
        "padded cnf is not equal"
    );
    assert_eq!(x5t_s256(&f.der), cnf);
}

#[test]
fn xfcc_variants() {
    let f = fixture();
    let other = fixture();
    let cert = url_encode(&f.pem);
    let h = hex(&f.thumb);
    let h_other = hex(&other.thumb);
    #[rustfmt::skip] // one case per line reads as a table
    let cases: Vec<(&str, String)> = vec![
        ("hash only", format!("By=spiffe://bank/api;Hash={h};URI=spiffe://tpp/client")),
        ("hash upper-case hex", format!("Hash={}", h.to_uppercase())),
        ("cert only, quoted", format!("Cert=\"{cert}\"")),
        ("cert only, unquoted", format!("Cert={cert}")),
        ("cert and matching hash", format!("By=x;Hash={h};Cert=\"{cert}\";Chain=\"{cert}\"")),
        ("lower-case keys", format!("hash={h}")),
        ("last of several elements", format!("By=a;Hash={h_other},By=b;Hash={h}")),
        ("last of three with spaces", format!("Hash={h_other}, Hash={h_other} ,  By=c;Hash={h}")),
        ("subject with separators", format!("By=x;Subject=\"CN=a,O=b;c=d\";Hash={h}")),
        ("escaped quotes", format!("Subject=\"O=\\\"Acme, Inc.\\\";CN=x\";Hash={h}")),
        ("smuggling attempt in earlier element", format!("Subject=\"a\\\",Hash={h_other}\";Hash={h}")),
        ("smuggling attempt in quoted value", format!("Hash={h};Subject=\"x\\\";Hash={h_other}\"")),
        ("cert with chain of other certs", format!("Cert=\"{}\"", url_encode(&(f.pem.clone() + &other.pem)))),
    ];
    for (name, value) in cases {
        assert_eq!(
            parse_forwarded(&value, ForwardedFormat::Xfcc),
            Ok(f.thumb),
            "{name}"
        );
    }
}

#[test]
fn xfcc_refusals() {
    let f = fixture();
    let other = fixture();
    let cert = url_encode(&f.pem);
    let h = hex(&f.thumb);
    let malformed = |s| Err(ForwardedCertError::Malformed(s));
    #[rustfmt::skip] // one case per line reads as a table
    let cases: Vec<(&str, String, Outcome)> = vec![
        ("empty", String::new(), Err(ForwardedCertError::Empty)),
        ("blank", "  ".into(), Err(ForwardedCertError::Empty)),
        ("no cert in last element", format!("Hash={h},By=spiffe://x"), Err(ForwardedCertError::NoCertificate)),
        ("trailing comma", format!("Hash={h},"), malformed("empty XFCC element")),
        ("short hash", "Hash=abcd".into(), malformed("XFCC Hash is not 64 hex digits")),
        ("non-hex hash", format!("Hash={}", "zz".repeat(32)), malformed("XFCC Hash is not 64 hex digits")),
        ("non-ascii hash", format!("Hash={}é", &h[..62]), malformed("XFCC Hash is not 64 hex digits")),
        ("hash disagrees with cert", format!("Hash={};Cert=\"{cert}\"", hex(&other.thumb)), Err(ForwardedCertError::HashMismatch)),
        ("duplicate hash", format!("Hash={h};Hash={h}"), malformed("duplicate XFCC Hash")),
        ("duplicate cert", format!("Cert={cert};Cert={cert}"), malformed("duplicate XFCC Cert")),
        ("unterminated quote", format!("Hash={h};Subject=\"abc"), malformed("unterminated XFCC quoted value")),
        ("escaped closing quote", format!("Hash={h};Subject=\"abc\\\""), malformed("unterminated XFCC quoted value")),
        ("stray quote", format!("Hash={h};Subject=a\"b\""), malformed("stray quote in XFCC value")),
        ("doubled quotes", format!("Hash={h};Subject=\"a\"\"b\""), malformed("stray quote in XFCC value")),
        ("pair without =", format!("Hash={h};junk"), malformed("XFCC pair without '='")),
        ("bad key", format!("Ha sh={h}"), malformed("invalid XFCC key")),
        ("cert not PEM", "Cert=\"hello\"".into(), Err(ForwardedCertError::NoCertificate)),
        ("cert broken PEM", format!("Cert=\"{}\"", url_encode("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")), malformed("invalid PEM")),
        ("too large", format!("Hash={h};Subject=\"{}\"", "a".repeat(MAX_FORWARDED_LEN)), Err(ForwardedCertError::TooLarge)),
    ];
    for (name, value, expected) in cases {
        assert_eq!(
            parse_forwarded(&value, ForwardedFormat::Xfcc),
            expected,
            "{name}"
        );
    }
}

#[test]
fn rfc9440_and_pem() {
    let f = fixture();
    let b64 = STANDARD.encode(&f.der);
    let ok = [
        ("rfc9440", format!(":{b64}:"), ForwardedFormat::Rfc9440),
        (
            "rfc9440 with OWS",
            format!(" :{b64}:\t"),
            ForwardedFormat::Rfc9440,
        ),
        (
            "rfc9440 unpadded",
            format!(":{}:", b64.trim_end_matches('=')),
            ForwardedFormat::Rfc9440,
        ),
        (
            "rfc9440 with parameter",
            format!(":{b64}:;hop=1"),
            ForwardedFormat::Rfc9440,
        ),
        (
            "pem urlencoded",
            url_encode(&f.pem),
            ForwardedFormat::PemUrlencoded,
        ),
        (
            "pem not encoded",
            f.pem.clone(),
            ForwardedFormat::PemUrlencoded,
        ),
    ];
    for (name, value, format) in ok {
        assert_eq!(parse_forwarded(&value, format), Ok(f.thumb), "{name}");
    }
    let malformed = |s| Err(ForwardedCertError::Malformed(s));
    #[rustfmt::skip] // one case per line reads as a table
    let bad: Vec<(&str, String, ForwardedFormat, Outcome)> = vec![
        ("rfc9440 bare base64", b64.clone(), ForwardedFormat::Rfc9440, malformed("not a byte sequence")),
        ("rfc9440 unterminated", format!(":{b64}"), ForwardedFormat::Rfc9440, malformed("unterminated byte sequence")),
        ("rfc9440 trailing junk", format!(":{b64}:x"), ForwardedFormat::Rfc9440, malformed("trailing data after byte sequence")),
        ("rfc9440 url-safe character", format!(":-{}:", &b64[1..]), ForwardedFormat::Rfc9440, malformed("invalid base64")),
        ("rfc9440 not DER", format!(":{}:", STANDARD.encode(b"hello world, not a certificate")), ForwardedFormat::Rfc9440, malformed("not a DER certificate")),
        ("rfc9440 empty", "::".into(), ForwardedFormat::Rfc9440, malformed("not a DER certificate")),
        ("pem empty document", "%0A".into(), ForwardedFormat::PemUrlencoded, Err(ForwardedCertError::NoCertificate)),
        ("pem key only", url_encode("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), ForwardedFormat::PemUrlencoded, Err(ForwardedCertError::NoCertificate)),
        ("pem too large", "A".repeat(MAX_FORWARDED_LEN + 1), ForwardedFormat::PemUrlencoded, Err(ForwardedCertError::TooLarge)),
    ];
    for (name, value, format, expected) in bad {
        assert_eq!(parse_forwarded(&value, format), expected, "{name}");
    }
}

#[test]
fn garbage_never_panics() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let samples = [
        "\"", "\\", ",", ";", "=", "Hash=", "Cert=", ":", "%", "%0", "é", "\"\\\"",
    ];
    for round in 0..2_000u64 {
        let mut s = String::new();
        for _ in 0..(round % 24) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            s.push_str(samples[(state % samples.len() as u64) as usize]);
        }
        for format in [
            ForwardedFormat::Xfcc,
            ForwardedFormat::Rfc9440,
            ForwardedFormat::PemUrlencoded,
        ] {
            let _ = parse_forwarded(&s, format);
        }
    }
}

#[test]
fn format_names_and_error_mapping() {
    let cases = [
        ("xfcc", ForwardedFormat::Xfcc),
        ("rfc9440", ForwardedFormat::Rfc9440),
        ("pem_urlencoded", ForwardedFormat::PemUrlencoded),
    ];
    for (name, format) in cases {
        assert_eq!(
            serde_yaml::from_str::<ForwardedFormat>(name).expect(name),
            format
        );
    }
    assert!(serde_yaml::from_str::<ForwardedFormat>("rfc_9440").is_err());
    assert_eq!(
        ForwardedCertError::Empty.deny_reason(),
        DenyReason::MtlsCertificateMissing
    );
}
