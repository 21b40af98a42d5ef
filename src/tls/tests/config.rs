//! `listen.tls` parsing and compilation (spec §4).

use std::path::Path;

use crate::tls::{ClientAuth, TlsConfig};

fn parse(yaml: &str) -> Result<TlsConfig, serde_yaml::Error> {
    serde_yaml::from_str(yaml)
}

#[test]
fn compile_resolves_paths_against_the_config_dir() {
    let raw =
        parse("cert_file: tls/server.crt\nkey_file: /abs/server.key\nclient_ca_file: ca.pem\n")
            .unwrap();
    let s = raw.compile(Path::new("/etc/fapi-guard")).unwrap();
    assert_eq!(s.cert_file, Path::new("/etc/fapi-guard/tls/server.crt"));
    assert_eq!(s.key_file, Path::new("/abs/server.key"));
    assert_eq!(
        s.client_ca_file.as_deref(),
        Some(Path::new("/etc/fapi-guard/ca.pem"))
    );
    assert_eq!(s.client_auth, ClientAuth::Optional, "default");
}

#[test]
fn config_cases() {
    let cases = [
        (
            "required with CA",
            "client_auth: required\nclient_ca_file: ca.pem\n",
            None,
        ),
        ("optional without CA", "client_auth: optional\n", None),
        (
            "required without CA",
            "client_auth: required\n",
            Some("listen.tls.client_auth"),
        ),
        ("unknown key", "client_cert: x\n", Some("unknown field")),
        (
            "bad client_auth",
            "client_auth: sometimes\n",
            Some("unknown variant"),
        ),
    ];
    for (name, extra, want_err) in cases {
        let yaml = format!("cert_file: s.crt\nkey_file: s.key\n{extra}");
        let result = parse(&yaml)
            .map_err(|e| e.to_string())
            .and_then(|raw| raw.compile(Path::new(".")));
        match (result, want_err) {
            (Ok(_), None) => {}
            (Err(e), Some(want)) => assert!(e.contains(want), "{name}: {e}"),
            (r, w) => panic!("{name}: got {r:?}, wanted error {w:?}"),
        }
    }
}
