//! `state:` section (spec §4): where replicas share the DPoP replay cache and revocations.

use serde::Deserialize;

/// `state:` as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub backend: Backend,
    /// One Redis URL, or the seed nodes of a Redis Cluster.
    #[serde(default)]
    pub redis_url: Option<RedisUrls>,
    /// The URL names a Redis Cluster (implied by a list of URLs).
    #[serde(default)]
    pub redis_cluster: Option<bool>,
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// Prefix of every Redis key and channel, so several fleets can share one Redis.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
}

/// `redis_url`: a single URL or a list of cluster seed nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RedisUrls {
    One(String),
    Many(Vec<String>),
}

fn default_prefix() -> String {
    "fapi-guard".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// One replica: replay cache and revocations in this process only.
    #[default]
    Memory,
    /// Replicas share the replay cache and revocations through Redis.
    Redis,
}

/// What to do while Redis cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Fail closed: requests that need the replay check get 503 `dependency_unavailable`, and
    /// `/readyz` answers 503.
    #[default]
    Deny,
    /// Fall back to per-replica state, flagged by `fapi_guard_state_backend_up 0` and a log line.
    Local,
}

/// The compiled `state:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    pub redis: Option<RedisSettings>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://` URLs: one server, or the seed nodes of a cluster. Never logged (a URL may
    /// carry a password).
    pub nodes: Vec<String>,
    /// Redis Cluster: commands are routed by slot, and the nodes are discovered from the seeds.
    pub cluster: bool,
    pub on_unavailable: OnUnavailable,
    pub key_prefix: String,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("nodes", &self.nodes.len())
            .field("cluster", &self.cluster)
            .field("on_unavailable", &self.on_unavailable)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// More seed nodes than this is a typo (a cluster is discovered from any one of them).
const MAX_NODES: usize = 64;

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            redis_url: None,
            redis_cluster: None,
            on_unavailable: OnUnavailable::Deny,
            key_prefix: default_prefix(),
        }
    }
}

impl StateConfig {
    pub fn compile(self) -> Result<StateSettings, String> {
        match self.backend {
            Backend::Memory => {
                if self.redis_url.is_some() || self.redis_cluster.is_some() {
                    return Err(
                        "state.redis_url, state.redis_cluster: only used with `backend: redis`"
                            .into(),
                    );
                }
                Ok(StateSettings { redis: None })
            }
            Backend::Redis => {
                let (nodes, listed) = match self.redis_url {
                    None => return Err("state.redis_url: required with `backend: redis`".into()),
                    Some(RedisUrls::One(u)) => (vec![u], false),
                    Some(RedisUrls::Many(v)) => (v, true),
                };
                if nodes.is_empty() || nodes.len() > MAX_NODES {
                    return Err(format!("state.redis_url: 1 to {MAX_NODES} URLs"));
                }
                let cluster = match (self.redis_cluster, listed) {
                    (Some(false), true) => {
                        return Err("state.redis_url: a list of URLs names a Redis Cluster; \
                                    remove `redis_cluster: false` or give one URL"
                            .into());
                    }
                    (Some(c), _) => c,
                    (None, listed) => listed,
                };
                for (i, url) in nodes.iter().enumerate() {
                    let at = if listed {
                        format!("state.redis_url[{i}]")
                    } else {
                        "state.redis_url".to_owned()
                    };
                    check_url(url).map_err(|e| format!("{at}: {e}"))?;
                }
                if cluster {
                    // Parsed here so that a typo fails at load; the connection is made at start.
                    redis::cluster::ClusterClient::new(
                        nodes.iter().map(String::as_str).collect::<Vec<_>>(),
                    )
                    .map_err(|e| {
                        format!("state.redis_url: not a usable cluster: {}", e.kind_str())
                    })?;
                }
                if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
                    return Err("state.key_prefix: must be a non-empty word".into());
                }
                Ok(StateSettings {
                    redis: Some(RedisSettings {
                        nodes,
                        cluster,
                        on_unavailable: self.on_unavailable,
                        key_prefix: self.key_prefix,
                    }),
                })
            }
        }
    }
}

/// A `redis://` URL (or `redis+unix://`). TLS (`rediss://`) is not supported: this build has no
/// TLS client for Redis, and a URL that silently fell back to plain text would be worse.
fn check_url(url: &str) -> Result<(), String> {
    if url
        .get(..9)
        .is_some_and(|s| s.eq_ignore_ascii_case("rediss://"))
    {
        return Err(
            "rediss:// (TLS) is not supported; reach Redis over a trusted network \
                    or a TLS sidecar, with redis://"
                .into(),
        );
    }
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| format!("not a Redis URL: {}", e.kind_str()))
}

trait KindStr {
    fn kind_str(&self) -> &'static str;
}

impl KindStr for redis::RedisError {
    /// The error category only: the message could echo the URL (with its password).
    fn kind_str(&self) -> &'static str {
        match self.kind() {
            redis::ErrorKind::InvalidClientConfig => "invalid client configuration",
            _ => "invalid URL",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<StateSettings, String> {
        let c: StateConfig = serde_yaml::from_str(y).map_err(|e| e.to_string())?;
        c.compile()
    }

    #[test]
    fn memory_is_the_default_and_redis_needs_a_url() {
        assert_eq!(parse("{}").expect("ok"), StateSettings { redis: None });
        let e = parse("backend: redis").expect_err("needs url");
        assert!(e.contains("state.redis_url"), "{e}");
        let e = parse("backend: memory\nredis_url: redis://x").expect_err("memory + url");
        assert!(e.contains("only used"), "{e}");
        let e = parse("backend: memory\nredis_cluster: true").expect_err("memory + cluster");
        assert!(e.contains("only used"), "{e}");
        let e = parse("backend: redis\nredis_url: http://x").expect_err("bad scheme");
        assert!(e.contains("not a Redis URL"), "{e}");
        let e = parse("backend: redis\nredis_url: redis://x\non_unavailable: maybe")
            .expect_err("bad mode");
        assert!(e.contains("unknown variant"), "{e}");
        let s = parse("backend: redis\nredis_url: redis://127.0.0.1:6379\non_unavailable: local")
            .expect("ok");
        let r = s.redis.expect("redis");
        assert_eq!(r.on_unavailable, OnUnavailable::Local);
        assert_eq!(r.key_prefix, "fapi-guard");
        assert!(!r.cluster);
    }

    #[test]
    fn a_cluster_is_named_by_the_flag_or_a_list_of_urls() {
        let cases: [(&str, &str, Result<(usize, bool), &str>); 8] = [
            ("one URL", "redis_url: redis://a:1", Ok((1, false))),
            (
                "flag on one seed",
                "redis_url: redis://a:1\nredis_cluster: true",
                Ok((1, true)),
            ),
            (
                "a list implies a cluster",
                "redis_url: [redis://a:1, redis://b:2, redis://c:3]",
                Ok((3, true)),
            ),
            (
                "a list with the flag off",
                "redis_url: [redis://a:1, redis://b:2]\nredis_cluster: false",
                Err("names a Redis Cluster"),
            ),
            ("an empty list", "redis_url: []", Err("1 to 64 URLs")),
            (
                "a bad node is located",
                "redis_url: [redis://a:1, 'http://b']",
                Err("state.redis_url[1]: not a Redis URL"),
            ),
            (
                "TLS is refused plainly",
                "redis_url: rediss://a:1",
                Err("rediss:// (TLS) is not supported"),
            ),
            (
                "TLS in a list too",
                "redis_url: [redis://a:1, REDISS://b:2]",
                Err("state.redis_url[1]: rediss://"),
            ),
        ];
        for (name, yaml, want) in cases {
            let got = parse(&format!("backend: redis\n{yaml}"))
                .map(|s| s.redis.expect("redis"))
                .map(|r| (r.nodes.len(), r.cluster));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{name}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{name}: {e}"),
                (g, w) => panic!("{name}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn settings_never_print_the_url() {
        let s = parse("backend: redis\nredis_url: redis://user:hunter2@h:1")
            .expect("ok")
            .redis
            .expect("redis");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
