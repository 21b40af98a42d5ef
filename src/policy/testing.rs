//! `fapi-guard policy test`: table tests for policies, like `opa test`. Each case is
//! a request, the token's claims (taken as verified), the consent records the consent service
//! would return, and the expected decision. Cases run through the same path normalization,
//! route table, consent verdict and pure `decide` as the proxy, with no sockets.
//!
//! Fixtures stand for what the proxy verifies cryptographically: a token with `cnf.jkt` is
//! presented with a valid DPoP proof of that key, one with `cnf.x5t#S256` over a connection with
//! that certificate (`any` is accepted for either).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{PolicySet, Route};
use crate::clock::Clock;
use crate::config::hint::closest;
use crate::config::{InvalidConfig, IssuerSettings, KeySource, parse_yaml_list, resolve};
use crate::consent::{ConsentContext, ConsentOutcome, ConsentRecord, ConsentRule, judge};
use crate::decide::{self, AuthScheme, Check, Decision, DpopFact, Facts, TokenFact, Trace};
use crate::path;
use crate::reason::DenyReason;
use crate::token::VerifiedToken;

const TEST_ISSUER: &str = "policy-test";
pub(super) const PUBLIC_URL: &str = "https://api.bank.example";

/// A policy test file (`*_test.yaml`): table tests run by `fapi-guard policy test`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PolicyTestFile")]
pub(super) struct RawTestFile {
    /// The policy under test, relative to the test file.
    pub(super) policy: PathBuf,
    /// The origin RAR `locations` are compared with.
    #[serde(default)]
    pub(super) public_url: Option<String>,
    pub(super) cases: Vec<RawCase>,
}

/// One case: a request, the token's claims (taken as verified), the consent records the consent service would return, and the expected decision.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TestCase")]
pub(super) struct RawCase {
    pub(super) name: String,
    pub(super) request: RawRequest,
    #[serde(default)]
    pub(super) token: Option<Map<String, Value>>,
    #[serde(default)]
    pub(super) consents: BTreeMap<String, Value>,
    pub(super) expect: Expect,
}

/// The request of a case.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TestRequest")]
pub(super) struct RawRequest {
    pub(super) method: String,
    pub(super) path: String,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) body: Option<Value>,
}

/// `allow`, or `{deny: <reason code>}`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(super) enum Expect {
    /// `allow`
    Word(#[schemars(schema_with = "allow_schema")] String),
    /// `{deny: reason}`
    Deny {
        #[schemars(schema_with = "reason_schema")]
        deny: String,
    },
}

fn allow_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"const": "allow"})
}

/// The deny reason codes (docs/reference.md), so editors complete them.
fn reason_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let codes: Vec<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
    schemars::json_schema!({"type": "string", "enum": codes})
}

/// One case's verdict.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub expected: String,
    pub got: String,
    /// The route the request matched, if any (for coverage).
    pub route: Option<Arc<Route>>,
    pub decision: Decision,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.expected == self.got
    }
}

/// Reads a test file: every structural error, and every `expect` naming no reason code (with
/// the closest code as a hint), located.
pub(super) fn read_file(file: &Path) -> Result<(RawTestFile, Vec<String>), Vec<InvalidConfig>> {
    let src = std::fs::read_to_string(file)
        .map_err(|e| vec![InvalidConfig::new(file, "", format!("cannot read: {e}"))])?;
    let parsed = parse_yaml_list::<RawTestFile, RawCase>(file, &src, "cases");
    let mut errors = parsed.errors;
    let marks = parsed.marks;
    let Some(raw) = parsed.value else {
        return Err(errors);
    };
    let mut expected = Vec::with_capacity(raw.cases.len());
    for (case, &i) in raw.cases.iter().zip(&parsed.kept) {
        match check_expect(file, &marks, i, case) {
            Ok(e) => expected.push(e),
            Err(e) => errors.push(e),
        }
    }
    // Cases that failed to parse, minus the members in error: a bad `expect` of theirs too.
    for p in parsed.partial {
        if p.removed.iter().any(|r| r.starts_with("expect")) {
            continue;
        }
        if let Ok(case) = serde_yaml::from_value::<RawCase>(p.value)
            && let Err(e) = check_expect(file, &marks, p.index, &case)
        {
            errors.push(e);
        }
    }
    errors.sort_by_key(|e| (e.line, e.column));
    if errors.is_empty() {
        Ok((raw, expected))
    } else {
        Err(errors)
    }
}

/// What case `i` expects (`allow` or `deny <reason>`), or why that is no expectation.
fn check_expect(
    file: &Path,
    marks: &crate::config::Marks,
    i: usize,
    case: &RawCase,
) -> Result<String, InvalidConfig> {
    let field = format!("cases[{i}] ({})", case.name);
    match &case.expect {
        Expect::Word(w) if w == "allow" => Ok("allow".to_owned()),
        Expect::Deny { deny } if DenyReason::parse(deny).is_some() => Ok(format!("deny {deny}")),
        Expect::Deny { deny } => {
            let hint = closest(deny, DenyReason::ALL.iter().map(|r| r.as_str()))
                .map_or(String::new(), |c| format!(", did you mean `{c}`?"));
            Err(InvalidConfig::new(
                file,
                format!("{field}.expect.deny"),
                format!("unknown deny reason `{deny}`{hint}"),
            )
            .locate(marks))
        }
        Expect::Word(w) => Err(InvalidConfig::new(
            file,
            format!("{field}.expect"),
            format!("`{w}`: must be `allow` or `{{deny: <reason code>}}`"),
        )
        .locate(marks)),
    }
}

/// `policy check` on a test file: its errors, none when it is well-formed.
pub fn check_file(file: &Path) -> Vec<InvalidConfig> {
    read_file(file).err().unwrap_or_default()
}

/// The JSON Schema of the test-file format, from the types the test runner parses.
pub(super) fn schema_for(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<RawTestFile>()
}

/// Runs every case of one `*_test.yaml` file.
pub fn run_file(file: &Path) -> Result<Vec<CaseResult>, Vec<InvalidConfig>> {
    run_file_with_policy(file).map(|r| r.results)
}

/// One test file's run, with what coverage needs.
#[derive(Debug)]
pub struct FileRun {
    pub results: Vec<CaseResult>,
    /// The policy the cases ran against, compiled.
    pub set: PolicySet,
    /// Its path as the test file's `policy:` names it, resolved against the test file.
    pub policy: PathBuf,
}

/// `run_file`, also returning the compiled policy the cases ran against (for coverage).
pub fn run_file_with_policy(file: &Path) -> Result<FileRun, Vec<InvalidConfig>> {
    let (raw, expected) = read_file(file)?;
    let policy = resolve(file, &raw.policy);
    let policies = PolicySet::load(std::slice::from_ref(&policy))?;
    let public_url = raw.public_url.as_deref().unwrap_or(PUBLIC_URL);
    let mut results = Vec::with_capacity(raw.cases.len());
    for (case, expected) in raw.cases.into_iter().zip(expected) {
        let (decision, route) = run_case(&policies, &case, public_url);
        let got = match decision {
            Decision::Allow(_) => "allow".to_owned(),
            Decision::Deny(r) => format!("deny {r}"),
        };
        results.push(CaseResult {
            name: case.name,
            expected,
            got,
            route,
            decision,
        });
    }
    Ok(FileRun {
        results,
        set: policies,
        policy,
    })
}

pub(super) fn run_case(
    policies: &PolicySet,
    case: &RawCase,
    public_url: &str,
) -> (Decision, Option<Arc<Route>>) {
    let deny = |r| (Decision::Deny(r), None);
    let req = &case.request;
    let Ok(method) = Method::from_bytes(req.method.as_bytes()) else {
        return deny(DenyReason::RequestMalformed);
    };
    let (raw_path, query) = match req.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.path.as_str(), None),
    };
    let Ok(norm) = path::normalize(raw_path) else {
        return deny(DenyReason::RequestMalformed);
    };
    if query.is_some_and(path::query_has_access_token) {
        return deny(DenyReason::RequestMalformed);
    }
    let Some(m) = policies.lookup(&method, &norm) else {
        return deny(DenyReason::RouteNotFound);
    };
    let route = m.route;
    let d = decide_case(route, &m.params, case, query, public_url, None, &mut ());
    (d, Some(route.clone()))
}

/// How the client presents its token, overriding what the fixture's `cnf` implies
/// (`policy explain --binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Presented {
    /// `Authorization: DPoP` with a valid proof (of the key `cnf.jkt` names, if any).
    Dpop,
    /// `Authorization: Bearer` over a connection with a client certificate (the one
    /// `cnf.x5t#S256` names, if any).
    Mtls,
    /// `Authorization: Bearer`, no proof, no client certificate.
    None,
}

/// One case through the proxy's own decision functions, reporting each check to `trace`.
pub(super) fn decide_case(
    route: &Route,
    params: &matchit::Params<'_, '_>,
    case: &RawCase,
    query: Option<&str>,
    public_url: &str,
    presented: Option<Presented>,
    trace: &mut impl Trace,
) -> Decision {
    let now = Clock::system().now_unix();
    let token = match &case.token {
        None => None,
        Some(claims) => match token_from(claims, route.audiences.as_deref(), now) {
            Ok(t) => Some(t),
            Err(r) => {
                trace.step(Check::Token, Err(r));
                return Decision::Deny(r);
            }
        },
    };
    // The fixture's binding is taken as proven (see the module docs).
    let cert: Option<[u8; 32]> = token.as_ref().and_then(|t| {
        let x5t = t.cnf.x5t_s256.as_deref()?;
        // (`decode_slice` wants room for its worst case, so decode to a Vec.)
        URL_SAFE_NO_PAD.decode(x5t).ok()?.try_into().ok()
    });
    let jkt = token.as_ref().and_then(|t| t.cnf.jkt.clone());
    let mut facts = Facts {
        now,
        scheme: if jkt.is_some() {
            AuthScheme::Dpop
        } else {
            AuthScheme::Bearer
        },
        token: token
            .as_ref()
            .map_or(TokenFact::Missing, TokenFact::Verified),
        dpop: jkt
            .as_deref()
            .map_or(DpopFact::Absent, |jkt| DpopFact::Verified { jkt }),
        client_cert_sha256: cert.as_ref(),
        consent: Ok(()),
        consent_purpose: None,
    };
    let zero_cert = [0u8; 32];
    match presented {
        None => {}
        Some(Presented::None) => {
            facts.scheme = AuthScheme::Bearer;
            facts.dpop = DpopFact::Absent;
            facts.client_cert_sha256 = None;
        }
        Some(Presented::Dpop) => {
            facts.scheme = AuthScheme::Dpop;
            facts.dpop = DpopFact::Verified {
                jkt: jkt.as_deref().unwrap_or("proof-key-thumbprint"),
            };
            facts.client_cert_sha256 = None;
        }
        Some(Presented::Mtls) => {
            facts.scheme = AuthScheme::Bearer;
            facts.dpop = DpopFact::Absent;
            facts.client_cert_sha256 = Some(cert.as_ref().unwrap_or(&zero_cert));
        }
    }
    let first = decide::decide_traced(&facts, route, trace);
    let (Some(rule), Some(t)) = (&route.consent, &token) else {
        return first;
    };
    if decide::settled_before_consent(first) {
        return first;
    }
    let outcome = consent(rule, t, case, params, query, public_url, now);
    facts.consent = outcome.result;
    facts.consent_purpose = outcome.purpose.as_deref();
    decide::decide_traced(&facts, route, trace)
}

/// The consent verdict with the case's consent records standing in for the consent service.
fn consent(
    rule: &ConsentRule,
    token: &VerifiedToken,
    case: &RawCase,
    params: &matchit::Params<'_, '_>,
    query: Option<&str>,
    public_url: &str,
    now: i64,
) -> ConsentOutcome {
    let mut headers = HeaderMap::new();
    for (k, v) in &case.request.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    let decoded = path::decode_params(params);
    let ctx = ConsentContext {
        client_id: &token.client_id,
        subject: &token.sub,
        params: &decoded,
        query,
        public_origin: public_url,
        now,
        body: case.request.body.as_ref(),
    };
    let record = match rule {
        ConsentRule::Rar(_) => None,
        ConsentRule::Record(r) => {
            let id = match r.consent_id(&token.extra, &headers) {
                Ok(id) => id,
                Err(reason) => return ConsentOutcome::deny(reason),
            };
            let rec = case.consents.get(id).map(|v| {
                serde_json::to_vec(v)
                    .map_err(|e| e.to_string())
                    .and_then(|b| ConsentRecord::from_json(&b))
            });
            match rec {
                None => None,
                Some(Ok(rec)) => Some((id, rec)),
                // A record the consent service could not have served: the proxy fails closed.
                Some(Err(_)) => return ConsentOutcome::deny(DenyReason::DependencyUnavailable),
            }
        }
    };
    judge(
        rule,
        &token.extra,
        &ctx,
        record.as_ref().map(|(id, r)| (*id, r)),
    )
}

/// A verified token from fixture claims; the RFC 9068 claims a fixture leaves out get harmless
/// defaults (valid now, this route's audience).
fn token_from(
    claims: &Map<String, Value>,
    audiences: Option<&[String]>,
    now: i64,
) -> Result<VerifiedToken, DenyReason> {
    let audience = audiences
        .and_then(<[String]>::first)
        .map_or(TEST_ISSUER, String::as_str);
    let mut c = claims.clone();
    // `cnf: {x5t#S256: any}`: some certificate, the one the connection presents.
    if let Some(cnf) = c.get_mut("cnf").and_then(Value::as_object_mut)
        && cnf.get("x5t#S256").and_then(Value::as_str) == Some("any")
    {
        cnf.insert("x5t#S256".into(), json!(URL_SAFE_NO_PAD.encode([0u8; 32])));
    }
    for (k, v) in [
        ("iss", json!(TEST_ISSUER)),
        ("aud", json!(audience)),
        ("iat", json!(now)),
        ("exp", json!(now + 300)),
        ("jti", json!("policy-test")),
        ("sub", json!("policy-test-subject")),
        ("client_id", json!("policy-test-client")),
    ] {
        c.entry(k).or_insert(v);
    }
    let issuer = Arc::new(IssuerSettings {
        issuer: TEST_ISSUER.to_owned(),
        keys: KeySource::File(PathBuf::new()),
        algorithms: Vec::new(),
        audiences: vec![TEST_ISSUER.to_owned()],
        max_token_lifetime: Duration::from_secs(3600),
        clock_skew: Duration::from_secs(10),
        jwks_refresh: Duration::from_secs(300),
        jwks_min_refetch: Duration::from_secs(10),
        purpose_claim: crate::purpose::DEFAULT_CLAIM.to_owned(),
        introspection: None,
    });
    VerifiedToken::from_claims(issuer, [0; 32], c)
}

/// `*_test.yaml` / `*_test.yml`.
pub fn is_test_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with("_test.yaml") || n.ends_with("_test.yml"))
}

/// `*_test.yaml` / `*_test.yml` files under `paths` (files or directories), sorted.
pub fn test_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                files.extend(
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| is_test_file(f)),
                );
            }
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    files
}
