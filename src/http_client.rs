//! Outbound HTTP(S) for the proxy's own dependencies (issuer JWKS, consent service, token
//! introspection): pooled, rustls with the aws-lc-rs provider and the webpki roots, bounded in
//! time and size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a dependency fetch failed. Always ends in a fail-closed answer for the request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Transport(String),
    #[error("timed out")]
    Timeout,
    #[error("unexpected status {0}")]
    Status(u16),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("invalid response: {0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}

/// A cheap-to-clone pooled client.
#[derive(Clone)]
pub struct HttpsClient {
    inner: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// Requests with a body (introspection `POST`s).
    with_body: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpsClient {
    pub fn new() -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| format!("TLS client setup: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector.clone());
        let with_body = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self { inner, with_body })
    }

    /// POST an `application/x-www-form-urlencoded` `form` with the given `Authorization`
    /// (client authentication), expecting 200 and at most `max_bytes` of body, within
    /// `timeout` (RFC 7662 §2.1).
    pub async fn post_form(
        &self,
        uri: &Uri,
        form: Bytes,
        authorization: &http::HeaderValue,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let req = Request::post(uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::AUTHORIZATION, authorization.clone())
            .body(Full::new(form))
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let work = async {
            let resp = self
                .with_body
                .request(req)
                .await
                .map_err(|e| FetchError::Transport(e.to_string()))?;
            if resp.status() != http::StatusCode::OK {
                return Err(FetchError::Status(resp.status().as_u16()));
            }
            let body = Limited::new(resp.into_body(), max_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge(max_bytes)
                    } else {
                        FetchError::Transport(e.to_string())
                    }
                })?;
            Ok(body.to_bytes().to_vec())
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    /// GET `uri`, expecting 200 and at most `max_bytes` of body, within `timeout`.
    pub async fn get(
        &self,
        uri: &Uri,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let req = Request::get(uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let work = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| FetchError::Transport(e.to_string()))?;
            if resp.status() != http::StatusCode::OK {
                return Err(FetchError::Status(resp.status().as_u16()));
            }
            let body = Limited::new(resp.into_body(), max_bytes)
                .collect()
                .await
                .map_err(|_| FetchError::TooLarge(max_bytes))?;
            Ok(body.to_bytes().to_vec())
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| FetchError::Timeout)?
    }
}
