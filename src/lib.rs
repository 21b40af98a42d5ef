//! fapi-guard: a sidecar reverse proxy enforcing FAPI 2.0 resource-server security.

pub mod clock;
pub mod dpop;
pub mod duration;
pub mod jwk;
pub mod mtls;
pub mod reason;
