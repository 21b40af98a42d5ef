//! Credentials for the load harness (`benches/load/run.sh`), minted in Rust so the harness needs
//! no Python packages: an ES256 issuer key and its JWKS, access tokens for each mode, a client
//! certificate for the certificate-bound modes (and its XFCC header value), a TLS server
//! certificate for the HTTP/2-over-TLS runs, and DPoP proofs, each unique, for the DPoP mode.
//!
//! ```text
//! cargo run --release --example load_mint -- setup DIR ISSUER AUDIENCE
//! cargo run --release --example load_mint -- proofs DIR COUNT FILES METHOD HTU
//! ```
//!
//! `setup` writes into DIR: `jwks.json` (public key only), `token-bearer`, `token-mtls`,
//! `token-full`, `token-dpop`, `xfcc` (the `x-forwarded-client-cert` value for the client
//! certificate), `tls.crt`/`tls.key` (a self-signed server certificate for 127.0.0.1), and
//! `dpop.pk8` (the DPoP client key, PKCS#8 DER, read back by `proofs`). Tokens live one hour.
//!
//! `proofs` writes COUNT DPoP proofs for METHOD and HTU bound to `token-dpop`, spread over FILES
//! files `proofs-0.txt`… (one per wrk thread), one proof per line, each with its own `jti` and
//! `iat` = now. Nothing secret is printed: only counts.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Token lifetime: the harness sets the issuer's `max_token_lifetime` to match.
const TOKEN_LIFETIME_SECS: u64 = 3600;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["setup", dir, issuer, audience] => setup(Path::new(dir), issuer, audience),
        ["proofs", dir, count, files, method, htu] => {
            proofs(Path::new(dir), count, files, method, htu)
        }
        _ => Err(
            "usage: load_mint setup DIR ISSUER AUDIENCE | proofs DIR COUNT FILES METHOD HTU".into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("load_mint: {e}");
        std::process::exit(2);
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An ES256 signer.
struct Es256 {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Es256 {
    fn generate() -> Result<(Self, Vec<u8>)> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "key generation failed")?;
        let pkcs8 = pkcs8.as_ref().to_vec();
        Ok((Self::from_pkcs8(&pkcs8)?, pkcs8))
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|_| "not a P-256 PKCS#8 key")?;
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// The public key as a JWK (x and y from the uncompressed point).
    fn public_jwk(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])})
    }

    /// RFC 7638 thumbprint: the required EC members in lexicographic order, SHA-256, base64url.
    fn thumbprint(&self) -> String {
        let j = self.public_jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            j["x"].as_str().unwrap_or_default(),
            j["y"].as_str().unwrap_or_default()
        );
        B64.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    }

    /// A compact JWS (raw r||s signature, RFC 7518 §3.4).
    fn sign(&self, header: &Value, payload: &Value) -> Result<String> {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(payload.to_string())
        );
        let sig = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| "signing failed")?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn setup(dir: &Path, issuer: &str, audience: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let (as_key, _) = Es256::generate()?;
    let mut jwk = as_key.public_jwk();
    jwk["kid"] = json!("load-1");
    jwk["use"] = json!("sig");
    jwk["alg"] = json!("ES256");
    write(dir, "jwks.json", json!({"keys": [jwk]}).to_string())?;

    // The client certificate a TLS terminator in front would have verified, forwarded in Envoy's
    // XFCC form (Hash = hex SHA-256 of the DER, Cert = URL-encoded PEM).
    let client_key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tpp-1 load client");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = params.self_signed(&client_key)?;
    let der_hash = digest::digest(&digest::SHA256, client.der());
    let hex: String = der_hash
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pem_enc =
        percent_encoding::utf8_percent_encode(&client.pem(), percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    write(
        dir,
        "xfcc",
        format!("By=spiffe://bank.example/api;Hash={hex};Cert=\"{pem_enc}\""),
    )?;
    let x5t = B64.encode(der_hash.as_ref());

    // The server certificate for HTTP/2 over TLS (fapi-guard and nginx both serve it).
    let server_key = rcgen::KeyPair::generate()?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let server = params.self_signed(&server_key)?;
    write(dir, "tls.crt", server.pem())?;
    write(dir, "tls.key", server_key.serialize_pem())?;

    let (dpop, dpop_pkcs8) = Es256::generate()?;
    write(dir, "dpop.pk8", &dpop_pkcs8)?;

    let iat = now();
    let token = |name: &str, extra: Value| -> Result<()> {
        let mut claims = json!({
            "iss": issuer, "sub": "psu-9", "aud": audience, "client_id": "tpp-1",
            "scope": "accounts", "iat": iat, "exp": iat + TOKEN_LIFETIME_SECS,
            "jti": format!("load-{name}-{iat}"),
        });
        if let (Some(c), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            c.extend(extra);
        }
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "load-1"});
        write(
            dir,
            &format!("token-{name}"),
            as_key.sign(&header, &claims)?,
        )?;
        Ok(())
    };
    token("bearer", json!({}))?;
    token("mtls", json!({"cnf": {"x5t#S256": x5t}}))?;
    token("dpop", json!({"cnf": {"jkt": dpop.thumbprint()}}))?;
    token(
        "full",
        json!({
            "cnf": {"x5t#S256": x5t},
            "openbanking_intent_id": "c-load",
            "purpose": "account-information",
            "act": {
                "sub": "spiffe://bank.example/ns/aggregators/sa/agg",
                "client_id": "agg-1",
                "act": {"sub": "spiffe://bank.example/ns/apps/sa/budget"}
            }
        }),
    )?;
    println!(
        "load_mint: keys, 4 tokens, client and server certificates in {}",
        dir.display()
    );
    Ok(())
}

fn proofs(dir: &Path, count: &str, files: &str, method: &str, htu: &str) -> Result<()> {
    let count: usize = count.parse().map_err(|_| "COUNT: not a number")?;
    let files: usize = files.parse().map_err(|_| "FILES: not a number")?;
    if files == 0 {
        return Err("FILES must be at least 1".into());
    }
    let pkcs8 = std::fs::read(dir.join("dpop.pk8"))?;
    let token = std::fs::read_to_string(dir.join("token-dpop"))?;
    let ath = B64.encode(digest::digest(&digest::SHA256, token.trim().as_bytes()));
    let started = Instant::now();
    let iat = now();
    // Minting is CPU-bound (one ES256 signature per proof): one thread per available core, each
    // writing its own share of every file, then the shares concatenated per file.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let run = format!("{iat}-{}", std::process::id());
    let parts: Vec<Result<Vec<Vec<u8>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (pkcs8, ath, run) = (&pkcs8, &ath, &run);
                s.spawn(move || -> Result<Vec<Vec<u8>>> {
                    let key = Es256::from_pkcs8(pkcs8)?;
                    let header =
                        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()});
                    let mut out = vec![Vec::new(); files];
                    for i in (w..count).step_by(workers) {
                        let claims = json!({
                            "jti": format!("{run}-{i}"), "htm": method, "htu": htu,
                            "iat": iat, "ath": ath,
                        });
                        let buf = &mut out[i % files];
                        buf.extend_from_slice(key.sign(&header, &claims)?.as_bytes());
                        buf.push(b'\n');
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("minting thread panicked".into()))
            })
            .collect()
    });
    let parts = parts.into_iter().collect::<Result<Vec<_>>>()?;
    for f in 0..files {
        let path = dir.join(format!("proofs-{f}.txt"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for part in &parts {
            file.write_all(&part[f])?;
        }
        file.flush()?;
    }
    println!(
        "load_mint: {count} DPoP proofs in {files} file(s), {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
