//! `fapi-guard audit verify --signatures`: re-checks the signature values kept in the audit
//! trail against the signers' public keys, proving later that client X signed the request
//! recorded there (and the sidecar the response) and that nobody edited the value since.
//!
//! The trail keeps the digest of each signature base, never the base (it holds the access
//! token). That is enough for the algorithms that sign a digest: ecdsa-p256-sha256 signs
//! SHA-256(base), rsa-pss-sha512 signs SHA-512(base) (both re-checked with aws-lc-rs
//! `verify_digest`). Ed25519 signs the whole base (RFC 8032 PureEdDSA, no prehash): such a
//! signature is counted as not re-checkable, with that reason.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use super::Algorithm;
use crate::audit::SignatureInfo;
use crate::jwk::PublicJwk;

/// Whose key signed: a client's (`signature` of a decision) or the sidecar's
/// (`response_signature` of an outcome).
pub const SIDECAR: &str = "<response signing key>";

/// Public keys by signer and `kid`.
#[derive(Default)]
pub struct KeyBook {
    keys: HashMap<String, HashMap<String, PublicJwk>>,
}

impl KeyBook {
    /// Adds every usable key of a JWKS document (`{"keys":[…]}`) for `owner` (a `client_id`,
    /// or [`SIDECAR`]). Keys without a `kid` cannot be matched and are skipped.
    pub fn add_jwks(&mut self, owner: &str, jwks: &Value) -> Result<usize, String> {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("not a JWKS (no \"keys\" array)")?;
        let entry = self.keys.entry(owner.to_owned()).or_default();
        let mut n = 0;
        for k in keys {
            let (Some(obj), Some(kid)) = (k.as_object(), k.get("kid").and_then(Value::as_str))
            else {
                continue;
            };
            if let Ok(public) = PublicJwk::from_json(obj) {
                entry.insert(kid.to_owned(), public);
                n += 1;
            }
        }
        Ok(n)
    }

    fn get(&self, owner: &str, kid: &str) -> Option<&PublicJwk> {
        self.keys.get(owner)?.get(kid)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.values().all(HashMap::is_empty)
    }
}

/// What re-checking saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecheckSummary {
    pub verified: u64,
    /// Ed25519 signatures: the whole base would be needed.
    pub not_recheckable: u64,
    /// No key for the signer and `keyid` (rotated away, client not given).
    pub without_key: u64,
}

impl fmt::Display for RecheckSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "signatures: {} re-checked ok, {} not re-checkable (ed25519 signs the whole base, \
             which the trail does not keep), {} without a key",
            self.verified, self.not_recheckable, self.without_key
        )
    }
}

/// A stored signature that does not verify: `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecheckFailure {
    pub file: PathBuf,
    pub line: u64,
    pub message: String,
}

impl fmt::Display for RecheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Re-checks every `signature` (decision records, against the client's keys) and
/// `response_signature` (outcome records, against [`SIDECAR`] keys) in `paths`. Run it after
/// the chain verified: an unreadable line here is a failure too.
pub fn recheck_files(paths: &[PathBuf], book: &KeyBook) -> Result<RecheckSummary, RecheckFailure> {
    let mut summary = RecheckSummary::default();
    for path in paths {
        let fail = |line: u64, message: String| RecheckFailure {
            file: path.clone(),
            line,
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| fail(0, format!("cannot read: {e}")))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let number = i as u64 + 1;
            let line = line.map_err(|e| fail(number, format!("read error: {e}")))?;
            recheck_line(&line, book, &mut summary).map_err(|m| fail(number, m))?;
        }
    }
    Ok(summary)
}

fn recheck_line(line: &str, book: &KeyBook, s: &mut RecheckSummary) -> Result<(), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let stored = [
        ("signature", v.get("client_id").and_then(Value::as_str)),
        ("response_signature", Some(SIDECAR)),
    ];
    for (field, owner) in stored {
        let Some(sig) = v.get(field) else { continue };
        let info: SignatureInfo =
            serde_json::from_value(sig.clone()).map_err(|e| format!("{field}: malformed: {e}"))?;
        let owner = owner.ok_or(format!("{field}: record has no client_id"))?;
        match check(&info, book.get(owner, &info.keyid)) {
            Outcome::Verified => s.verified += 1,
            Outcome::NotRecheckable => s.not_recheckable += 1,
            Outcome::NoKey => s.without_key += 1,
            Outcome::Failed(why) => {
                return Err(format!(
                    "{field} (keyid {:?} of {owner}) does not verify: {why}",
                    info.keyid
                ));
            }
        }
    }
    Ok(())
}

enum Outcome {
    Verified,
    NotRecheckable,
    NoKey,
    Failed(&'static str),
}

fn check(info: &SignatureInfo, key: Option<&PublicJwk>) -> Outcome {
    let Some(alg) = Algorithm::parse(&info.alg) else {
        return Outcome::Failed("unknown algorithm");
    };
    let digest = match alg {
        Algorithm::Ed25519 => return Outcome::NotRecheckable,
        Algorithm::EcdsaP256Sha256 => Some(&info.base_sha256),
        Algorithm::RsaPssSha512 => info.base_sha512.as_ref(),
    };
    let Some(key) = key else {
        return Outcome::NoKey;
    };
    let (Some(digest), Ok(value)) = (
        digest.and_then(|d| URL_SAFE_NO_PAD.decode(d).ok()),
        STANDARD.decode(&info.value),
    ) else {
        return Outcome::Failed("stored digest or value is not base64");
    };
    if Algorithm::for_key(key) != Some(alg) {
        return Outcome::Failed("the key is not of the recorded algorithm");
    }
    if key.verify_digest(alg.jws(), &digest, &value) {
        Outcome::Verified
    } else {
        Outcome::Failed("signature value and base digest do not match the key")
    }
}

/// Reads a JWKS file (`--client-jwks CLIENT=FILE`).
pub fn read_jwks(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

#[cfg(test)]
mod tests;

/// Where `audit verify --signatures` finds public keys.
#[derive(Debug, Default, Clone)]
pub struct KeySources {
    /// `--config FILE`: its `clients:` (files read, URIs fetched now) and, when configured,
    /// the public half of `signatures.response_signing_key_file`.
    pub config: Option<PathBuf>,
    /// `--client-jwks CLIENT=FILE`: an archived JWKS of a client (keys rotate; an auditor
    /// keeps the set that was valid when the trail was written).
    pub client_jwks: Vec<(String, PathBuf)>,
    /// `--response-jwks FILE`: the sidecar's admin `/jwks` as saved at the time (an
    /// ephemeral response key exists nowhere else).
    pub response_jwks: Option<PathBuf>,
}

impl KeySources {
    /// Collects the keys. Fetching a client's `jwks_uri` needs the network.
    pub async fn load(&self) -> Result<KeyBook, String> {
        let mut book = KeyBook::default();
        if let Some(path) = &self.config {
            let config = crate::config::Config::load(path).map_err(|e| e.to_string())?;
            let http = crate::http_client::HttpsClient::new()?;
            for c in &config.clients {
                let bytes = match &c.keys.keys {
                    crate::config::KeySource::File(p) => {
                        std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?
                    }
                    crate::config::KeySource::Uri(u) => http
                        .get(u, std::time::Duration::from_secs(10), 1024 * 1024)
                        .await
                        .map_err(|e| format!("{u}: {e}"))?,
                };
                let jwks: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("keys of {}: not JSON: {e}", c.client_id))?;
                book.add_jwks(&c.client_id, &jwks)
                    .map_err(|e| format!("keys of {}: {e}", c.client_id))?;
            }
            if let Some(s) = config
                .signatures
                .as_ref()
                .filter(|s| s.response_key.is_some())
            {
                let signer = super::ResponseSigner::new(s)?;
                book.add_jwks(SIDECAR, &signer.jwks())?;
            }
        }
        for (client, path) in &self.client_jwks {
            book.add_jwks(client, &read_jwks(path)?)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some(path) = &self.response_jwks {
            book.add_jwks(SIDECAR, &read_jwks(path)?)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(book)
    }
}

/// `audit verify --signatures`, after the chain verified: the summary line and 0, the first
/// failing signature (`FILE:LINE: …`) and 1, or 2 when no key source could be read.
pub async fn run_cli(files: &[PathBuf], sources: &KeySources) -> i32 {
    let book = match sources.load().await {
        Ok(b) if !b.is_empty() => b,
        Ok(_) => {
            eprintln!(
                "audit verify --signatures: no keys (give --config, --client-jwks or --response-jwks)"
            );
            return 2;
        }
        Err(e) => {
            eprintln!("audit verify --signatures: {e}");
            return 2;
        }
    };
    match recheck_files(files, &book) {
        Ok(summary) => {
            println!("{summary}");
            0
        }
        Err(f) => {
            eprintln!("{f}");
            1
        }
    }
}

/// Parses `CLIENT=FILE` (`--client-jwks`).
pub fn parse_client_jwks(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((c, f)) if !c.is_empty() && !f.is_empty() => Ok((c.to_owned(), PathBuf::from(f))),
        _ => Err(format!("{s:?}: expected CLIENT_ID=JWKS_FILE")),
    }
}
