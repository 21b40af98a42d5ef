//! Shared state between replicas (spec §4 `state:`): the fleet-wide DPoP replay check and the
//! fan-out of revocations, on Redis. With `backend: memory` (the default) neither exists and each
//! process keeps its own state.

mod config;
mod redis;
mod replay;

pub use config::{Backend, OnUnavailable, RedisSettings, StateConfig, StateSettings};
pub use redis::RedisState;
pub use replay::{RedisReplay, ReplayUnavailable};
