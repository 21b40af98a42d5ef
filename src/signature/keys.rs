//! Client keys (`clients:`): one JWKS per registered client, fetched, cached, refreshed in the
//! background and refetched on an unknown `kid` at most once per `jwks_min_refetch`, by the
//! very machinery that keeps issuer keys ([`JwksStore`]). A client's JWKS outage affects only
//! that client's signed requests (503), never readiness.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::ClientSettings;
use super::verify::SigFailure;
use crate::http_client::HttpsClient;
use crate::metrics::Metrics;
use crate::token::jwks::{self, JwksStore, Key, KeyLookupError};

/// The key sets of every registered client, by `client_id`.
pub struct ClientKeys {
    by_client: HashMap<String, Arc<JwksStore>>,
}

impl ClientKeys {
    pub fn new(clients: &[ClientSettings], http: &HttpsClient, metrics: &Arc<Metrics>) -> Self {
        let by_client = clients
            .iter()
            .map(|c| {
                let store = JwksStore::new(Arc::new(c.keys.clone()), http.clone(), metrics.clone());
                (c.client_id.clone(), Arc::new(store))
            })
            .collect();
        Self { by_client }
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Starts the background refresh of every client's keys.
    pub fn spawn_refresh(&self) {
        for store in self.by_client.values() {
            jwks::spawn_refresh(store.clone());
        }
    }

    /// The key `kid` of `client_id`. A client can only sign as itself: the key is looked up
    /// in the JWKS registered for the client the access token was issued to, never in another
    /// client's.
    pub async fn resolve(&self, client_id: &str, kid: &str) -> Result<Arc<Key>, SigFailure> {
        let store = self.by_client.get(client_id).ok_or(SigFailure::Invalid(
            "the token's client has no registered keys",
        ))?;
        store.key_for_kid(kid).await.map_err(|e| match e {
            KeyLookupError::NoMatchingKey => {
                SigFailure::Invalid("keyid is not a key of the client")
            }
            KeyLookupError::Unavailable => SigFailure::KeysUnavailable,
        })
    }
}
