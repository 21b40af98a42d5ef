//! The command connection to Redis: one server through a connection manager, or a Redis
//! Cluster whose client routes each command by key slot (DPoP replay keys carry no hash tag, so
//! they spread over every master). Both reconnect by themselves once established.
//!
//! Also the checks made on every (re)connection: the eviction policy, and where to subscribe.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Cmd, ConnectionAddr, Pipeline, RedisFuture, Value};

use super::StateError;

/// The command connection; cheap to clone (both variants share one multiplexed connection).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Opens the command connection.
pub(crate) async fn open(
    clients: &[redis::Client],
    cluster: bool,
    timeout: Duration,
) -> Result<Conn, StateError> {
    if cluster {
        let seeds: Vec<_> = clients
            .iter()
            .map(|c| c.get_connection_info().clone())
            .collect();
        let client = ClusterClientBuilder::new(seeds)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(1)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .build()
            .map_err(|_| StateError::Config)?;
        let c = tokio::time::timeout(timeout * 4, client.get_async_connection())
            .await
            .map_err(|_| StateError::Timeout)?
            .map_err(StateError::from_redis)?;
        return Ok(Conn::Cluster(c));
    }
    let client = clients.first().ok_or(StateError::Config)?.clone();
    // No retries inside the manager: a failed attempt surfaces with its own error (counted,
    // logged) and our loop retries with backoff; a later command reconnects the manager.
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(0)
        .set_max_delay(1000);
    let cm = tokio::time::timeout(timeout * 2, ConnectionManager::new_with_config(client, cfg))
        .await
        .map_err(|_| StateError::Timeout)?
        .map_err(StateError::from_redis)?;
    Ok(Conn::Single(cm))
}

/// What `CONFIG GET maxmemory-policy` said, over every master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// `noeviction` everywhere: nothing is dropped before its expiry.
    NoEviction,
    /// A policy that may drop keys under memory pressure (a name from the fixed list below).
    Evicting(&'static str),
    /// `CONFIG` is disabled or not permitted (managed Redis, ACLs): the policy cannot be read.
    Unknown,
}

const EVICTING: [&str; 7] = [
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

/// Reads the eviction policy (of every master in a cluster). The replay guarantee (a proof is
/// refused for its whole window) and the revocation set need keys kept until they expire, which
/// only `noeviction` promises: every other policy drops keys that carry an expiry.
pub(crate) async fn eviction_policy(c: &mut Conn, timeout: Duration) -> Result<Policy, StateError> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg("maxmemory-policy");
    let reply = match c {
        Conn::Single(m) => tokio::time::timeout(timeout, cmd.query_async::<Value>(m)).await,
        Conn::Cluster(cc) => {
            let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            tokio::time::timeout(timeout, cc.route_command(&cmd, all)).await
        }
    }
    .map_err(|_| StateError::Timeout)?;
    let reply = match reply {
        Ok(v) => v,
        // An error reply (`ERR unknown command`, `NOPERM`): CONFIG is renamed or not allowed.
        Err(e) if is_server_refusal(&e) => return Ok(Policy::Unknown),
        Err(e) => return Err(StateError::from_redis(e)),
    };
    let replies: Vec<&Value> = match (&*c, &reply) {
        // Per master: address → its reply.
        (Conn::Cluster(_), Value::Map(m)) => m.iter().map(|(_, v)| v).collect(),
        (Conn::Cluster(_), _) => return Err(StateError::UnexpectedReply),
        (Conn::Single(_), v) => vec![v],
    };
    let mut out = Policy::NoEviction;
    for r in replies {
        match policy_of(r)? {
            Some(p) if p.eq_ignore_ascii_case(b"noeviction") => {}
            Some(p) => {
                let name = EVICTING
                    .iter()
                    .find(|n| p.eq_ignore_ascii_case(n.as_bytes()))
                    .copied()
                    .unwrap_or("unrecognised");
                return Ok(Policy::Evicting(name));
            }
            None => out = Policy::Unknown,
        }
    }
    Ok(out)
}

/// The value in a `CONFIG GET` reply (`[name, value]`, or a map under RESP3); `None` for an
/// empty reply (the parameter is unknown to this server).
fn policy_of(v: &Value) -> Result<Option<&[u8]>, StateError> {
    match v {
        Value::Array(a) if a.is_empty() => Ok(None),
        Value::Map(m) if m.is_empty() => Ok(None),
        Value::Array(a) if a.len() == 2 => text(&a[1]).map(Some).ok_or(StateError::UnexpectedReply),
        Value::Map(m) if m.len() == 1 => text(&m[0].1).map(Some).ok_or(StateError::UnexpectedReply),
        _ => Err(StateError::UnexpectedReply),
    }
}

fn text(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b.as_slice()),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// An error the server answered (as opposed to no answer or an unreadable one).
fn is_server_refusal(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::ResponseError | redis::ErrorKind::ExtensionError
    ) && !e.is_io_error()
}

/// Where to open the pub/sub connection, best first. In a cluster, classic `PUBLISH` is
/// broadcast to every node over the cluster bus, so a subscriber on any node hears every
/// revocation; subscribing on the master that serves the revocation set's slot (where the
/// `MULTI … PUBLISH` runs) removes the bus hop, so the subscription is exactly as reliable as
/// on a single server. The seed nodes follow as fallbacks (announced addresses may not be
/// reachable from here).
pub(crate) async fn pubsub_endpoints(
    clients: &[redis::Client],
    cluster: bool,
    c: &mut Conn,
    key: &str,
    timeout: Duration,
) -> Vec<redis::Client> {
    let mut out = Vec::with_capacity(clients.len() + 1);
    if cluster {
        match tokio::time::timeout(timeout, slot_owner(c, key)).await {
            Ok(Ok(Some((host, port)))) => {
                if let Some(seed) = clients.first() {
                    let mut info = seed.get_connection_info().clone();
                    info.addr = ConnectionAddr::Tcp(host, port);
                    if let Ok(client) = redis::Client::open(info) {
                        out.push(client);
                    }
                }
            }
            _ => tracing::debug!("cluster slot owner of the revocation set not found; using seeds"),
        }
    }
    out.extend(clients.iter().cloned());
    out
}

/// The master serving `key`'s slot, from `CLUSTER KEYSLOT` and `CLUSTER SLOTS`.
async fn slot_owner(c: &mut Conn, key: &str) -> Result<Option<(String, u16)>, StateError> {
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(c)
        .await
        .map_err(StateError::from_redis)?;
    let slots: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(c)
        .await
        .map_err(StateError::from_redis)?;
    let Value::Array(ranges) = slots else {
        return Err(StateError::UnexpectedReply);
    };
    for r in ranges {
        let Value::Array(r) = r else { continue };
        let (Some(Value::Int(lo)), Some(Value::Int(hi)), Some(Value::Array(master))) =
            (r.first(), r.get(1), r.get(2))
        else {
            continue;
        };
        if !(*lo..=*hi).contains(&slot) {
            continue;
        }
        let host = match master.first() {
            Some(Value::BulkString(b)) => String::from_utf8(b.clone()).ok(),
            Some(Value::SimpleString(s)) => Some(s.clone()),
            _ => None,
        };
        let port = match master.get(1) {
            Some(Value::Int(p)) => u16::try_from(*p).ok(),
            _ => None,
        };
        // An empty host means "the address you reached me on", which we do not know here.
        if let (Some(h), Some(p)) = (host.filter(|h| !h.is_empty() && h != "?"), port) {
            return Ok(Some((h, p)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn config_get_replies() {
        let pair = |v: &str| Value::Array(vec![bulk("maxmemory-policy"), bulk(v)]);
        let cases: [(&str, Value, Result<Option<&[u8]>, ()>); 6] = [
            ("RESP2 pair", pair("noeviction"), Ok(Some(b"noeviction"))),
            (
                "RESP3 map",
                Value::Map(vec![(bulk("maxmemory-policy"), bulk("allkeys-lru"))]),
                Ok(Some(b"allkeys-lru")),
            ),
            ("unknown parameter", Value::Array(vec![]), Ok(None)),
            (
                "a status line",
                Value::SimpleString("garbage".into()),
                Err(()),
            ),
            ("an integer", Value::Int(7), Err(())),
            (
                "a pair whose value is not text",
                Value::Array(vec![bulk("maxmemory-policy"), Value::Int(1)]),
                Err(()),
            ),
        ];
        for (name, v, want) in cases {
            assert_eq!(policy_of(&v).map_err(|_| ()), want, "{name}");
        }
    }
}
