//! The fleet on a Redis Cluster this test starts itself: three masters (`redis-server
//! --cluster-enabled yes` on free ports, joined by `redis-cli --cluster create`), and two real
//! proxy processes, one naming every node, one a single seed with `redis_cluster: true`.
//! A DPoP proof used at A is refused at B, the replay keys spread over the masters' slots, and
//! a revocation posted to either replica is refused at the other.
//!
//! Needs `FAPI_GUARD_TEST_REDIS_SERVER` (`redis-server` and `redis-cli` on the PATH).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;
use serde_json::json;

/// Three cluster-enabled `redis-server`s, killed on drop.
struct Cluster {
    ports: Vec<u16>,
    children: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A port that is free, and whose cluster bus port (+10000) is free too.
fn cluster_port(taken: &[u16]) -> u16 {
    for _ in 0..1000 {
        let p = 20_000 + (rand_u16() % 25_000);
        if taken.contains(&p) {
            continue;
        }
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(p) && free(p + 10_000) {
            return p;
        }
    }
    panic!("no free port pair for a cluster node");
}

fn rand_u16() -> u16 {
    let b = uuid::Uuid::new_v4();
    u16::from_le_bytes([b.as_bytes()[0], b.as_bytes()[1]])
}

impl Cluster {
    fn start(dir: &Path) -> Self {
        require_redis_server();
        let mut ports = Vec::new();
        for _ in 0..3 {
            ports.push(cluster_port(&ports));
        }
        let mut children = Vec::new();
        for p in &ports {
            let child = Command::new("redis-server")
                .args(["--port", &p.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(dir.join(format!("nodes-{p}.conf")))
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server on the PATH");
            children.push(child);
        }
        let me = Self { ports, children };
        for p in &me.ports {
            let url = format!("redis://127.0.0.1:{p}");
            let t = Instant::now();
            while redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .is_err()
            {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "node {p} never started"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let nodes: Vec<String> = me.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli on the PATH");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let t = Instant::now();
        'wait: loop {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "cluster never reached state ok"
            );
            for p in &me.ports {
                let mut c = sync_conn(&format!("redis://127.0.0.1:{p}"));
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut c)
                    .expect("info");
                if !info.contains("cluster_state:ok") {
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'wait;
                }
            }
            break;
        }
        me
    }

    fn url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}", self.ports[i])
    }

    /// `prefix:dpop:*` keys held by each master.
    fn replay_keys_per_node(&self, prefix: &str) -> Vec<usize> {
        (0..self.ports.len())
            .map(|i| {
                let mut c = sync_conn(&self.url(i));
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}:dpop:*"))
                    .query(&mut c)
                    .expect("keys");
                keys.len()
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fapi_guard_test_redis_server),
    ignore = "starts its own Redis Cluster: set FAPI_GUARD_TEST_REDIS_SERVER=1 (redis-server, redis-cli)"
)]
async fn a_fleet_on_a_redis_cluster_shares_replay_keys_and_revocations() {
    let scratch = tempfile::tempdir().expect("dir");
    let cluster = Cluster::start(scratch.path());
    let key = TestKey::new("k1");
    let echo = Echo::start().await;
    let base = fixture(&key);
    let prefix = prefix();
    // A names every node; B one seed node and the flag.
    let all = format!(
        "[{}, {}, {}]",
        cluster.url(0),
        cluster.url(1),
        cluster.url(2)
    );
    let a = Replica::spawn(base.path(), "a", &echo, &all, &prefix, "deny");
    let b = Replica::spawn_with(
        base.path(),
        "b",
        &echo,
        &format!(
            "{}  redis_cluster: true\n",
            state(&cluster.url(1), &prefix, "deny")
        ),
    );
    a.wait_readyz(200, Duration::from_secs(20)).await;
    b.wait_readyz(200, Duration::from_secs(20)).await;

    // RFC 9449 §11.1 across the fleet.
    let client_key = DpopKey::new();
    let bound = key.token(|_, c| c["cnf"] = json!({"jkt": client_key.jkt}));
    let proof = || {
        client_key.proof(
            "GET",
            "https://api.test.example/accounts",
            &bound,
            |_, _| {},
        )
    };
    let p = proof();
    assert_eq!(a.call_dpop(&bound, &p).await.status, 200, "first use at A");
    let r = b.call_dpop(&bound, &p).await;
    assert_eq!(
        (r.status, r.reason()),
        (401, Some("dpop_proof_replayed")),
        "the same proof at B"
    );
    assert_eq!(echo.count(), 1, "the replay never reached the API");
    // Replay keys carry no hash tag: they spread over the masters' slots.
    for i in 0..30 {
        let at = if i % 2 == 0 { &a } else { &b };
        assert_eq!(at.call_dpop(&bound, &proof()).await.status, 200);
    }
    let per_node = cluster.replay_keys_per_node(&prefix);
    println!("replay keys per master: {per_node:?}");
    assert_eq!(per_node.iter().sum::<usize>(), 31, "{per_node:?}");
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "keys on at least two masters: {per_node:?}"
    );

    // Revocations fan out both ways.
    for (from, to, name) in [(&a, &b, "A → B"), (&b, &a, "B → A")] {
        let token = key.token(|_, _| {});
        assert_eq!(to.call(&token).await.status, 200, "{name}: before");
        let started = Instant::now();
        let r = from
            .revoke(json!({"kind": "jti", "value": jti_of(&token)}))
            .await;
        assert_eq!(
            (r.status, r.body["fanout"].as_str()),
            (202, Some("published")),
            "{name}: {:?}",
            r.body
        );
        loop {
            let r = to.call(&token).await;
            if r.status == 401 {
                assert_eq!(r.reason(), Some("token_revoked"), "{name}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{name}: not enforced within 1 s"
            );
        }
        println!("revocation {name} on the cluster: {:?}", started.elapsed());
    }
    // A replica started later loads the set from the cluster before it is ready.
    let revoked = key.token(|_, c| c["sub"] = json!("gone"));
    let r = a.revoke(json!({"kind": "subject", "value": "gone"})).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let c = Replica::spawn_with(
        base.path(),
        "c",
        &echo,
        &format!(
            "{}  redis_cluster: true\n",
            state(&cluster.url(2), &prefix, "deny")
        ),
    );
    c.wait_readyz(200, Duration::from_secs(20)).await;
    assert_eq!(c.call(&revoked).await.reason(), Some("token_revoked"));
    // Every replica subscribed on the master that serves the revocation set's slot (where the
    // publishing transaction runs), so no message depends on the cluster bus.
    let channel = format!("{prefix}:revocations");
    let subscribers: Vec<i64> = (0..3)
        .map(|i| {
            let mut c = sync_conn(&cluster.url(i));
            let v: Vec<redis::Value> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query(&mut c)
                .expect("numsub");
            match v.get(1) {
                Some(redis::Value::Int(n)) => *n,
                other => panic!("PUBSUB NUMSUB: {other:?}"),
            }
        })
        .collect();
    let owner = {
        let mut c = sync_conn(&cluster.url(0));
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&channel)
            .query(&mut c)
            .expect("keyslot");
        let slots: Vec<(i64, i64, i64)> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query::<Vec<redis::Value>>(&mut c)
            .expect("slots")
            .into_iter()
            .map(|r| {
                let redis::Value::Array(r) = r else {
                    panic!("slots")
                };
                let (redis::Value::Int(lo), redis::Value::Int(hi), redis::Value::Array(m)) =
                    (&r[0], &r[1], &r[2])
                else {
                    panic!("slots")
                };
                let redis::Value::Int(port) = &m[1] else {
                    panic!("port")
                };
                (*lo, *hi, *port)
            })
            .collect();
        let port = slots
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            .map(|(_, _, p)| *p)
            .expect("slot owner");
        cluster
            .ports
            .iter()
            .position(|p| i64::from(*p) == port)
            .expect("a node")
    };
    println!("revocation channel subscribers per master: {subscribers:?} (slot owner: {owner})");
    assert_eq!(subscribers[owner], 3, "{subscribers:?}");
    assert_eq!(subscribers.iter().sum::<i64>(), 3, "{subscribers:?}");
    for r in [&a, &b, &c] {
        let m = r.metrics().await;
        assert!(m.contains("fapi_guard_state_backend_up 1"), "{m}");
    }
    assert_every_forward_audited(&echo, &[&a, &b, &c]);
}
