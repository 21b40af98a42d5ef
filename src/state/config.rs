//! `state:` section (spec §4): where replicas share the DPoP replay cache and revocations.

use serde::Deserialize;

/// `state:` as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub backend: Backend,
    #[serde(default)]
    pub redis_url: Option<String>,
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// Prefix of every Redis key and channel, so several fleets can share one Redis.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL; never logged (it may carry a password).
    pub url: String,
    pub on_unavailable: OnUnavailable,
    pub key_prefix: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            redis_url: None,
            on_unavailable: OnUnavailable::Deny,
            key_prefix: default_prefix(),
        }
    }
}

impl StateConfig {
    pub fn compile(self) -> Result<StateSettings, String> {
        match self.backend {
            Backend::Memory => {
                if self.redis_url.is_some() {
                    return Err("state.redis_url: only used with `backend: redis`".into());
                }
                Ok(StateSettings { redis: None })
            }
            Backend::Redis => {
                let url = self
                    .redis_url
                    .ok_or("state.redis_url: required with `backend: redis`")?;
                // Parsed here so that a typo fails at load; the client is built at start.
                redis::Client::open(url.as_str())
                    .map_err(|e| format!("state.redis_url: not a Redis URL: {}", e.kind_str()))?;
                if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
                    return Err("state.key_prefix: must be a non-empty word".into());
                }
                Ok(StateSettings {
                    redis: Some(RedisSettings {
                        url,
                        on_unavailable: self.on_unavailable,
                        key_prefix: self.key_prefix,
                    }),
                })
            }
        }
    }
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
    }
}
