//! fapi-guard: a sidecar reverse proxy enforcing FAPI 2.0 resource-server security.

pub mod clock;
pub mod duration;
pub mod reason;
pub mod config;
pub mod path;
pub mod policy;
pub mod http_client;
pub mod token;
pub mod decide;
