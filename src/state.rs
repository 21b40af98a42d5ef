//! Shared state between replicas (spec §4 `state:`): the fleet-wide DPoP replay check and the
//! fan-out of revocations, on Redis (one server or a Redis Cluster). With `backend: memory`
//! (the default) neither exists and each process keeps its own state.

mod config;
mod conn;
mod redis;
mod replay;
mod session;
mod throttle;

pub use config::{Backend, OnUnavailable, RedisSettings, RedisUrls, StateConfig, StateSettings};
pub use redis::{MAX_PENDING, RedisState, StateError};
pub use replay::{RedisReplay, ReplayUnavailable};
