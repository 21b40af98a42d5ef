//! fapi-guard: a sidecar reverse proxy enforcing FAPI 2.0 resource-server security.

pub mod admin;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod consent;
pub mod decide;
pub mod demo;
pub mod dpop;
pub mod duration;
pub mod http_client;
pub mod jwk;
pub mod metrics;
pub mod mtls;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod reason;
pub mod reload;
pub mod response;
pub mod server;
pub mod tls;
pub mod token;
