//! Forwarding an allowed request to the upstream over a pooled keep-alive client, streaming
//! bodies both ways.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::body_limit::{self, RequestBody};
use crate::config::UpstreamSettings;
use crate::metrics::Metrics;

/// Why the upstream did not answer. The decision was already made; these end in 502/504.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable")]
    Connect,
    #[error("upstream timed out")]
    Timeout,
    #[error("upstream failed")]
    Protocol,
    /// The streamed request body passed `limits.max_body_bytes`; the upstream request was cut.
    #[error("request body over the limit")]
    BodyTooLarge,
}

impl UpstreamError {
    /// Metric label for `fapi_guard_upstream_errors_total{kind}`.
    pub const fn kind(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
            Self::BodyTooLarge => "body_too_large",
        }
    }
}

pub struct Upstream {
    client: Client<HttpConnector, RequestBody>,
    origin: String,
    prefix: String,
    timeout: Duration,
}

impl Upstream {
    pub fn new(s: &UpstreamSettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(s.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        Self {
            client,
            origin: s.origin.clone(),
            prefix: s.path_prefix.clone(),
            timeout: s.timeout,
        }
    }

    /// The upstream URI for a normalized path and the raw query (forwarded unchanged).
    pub fn uri(&self, path: &str, query: Option<&str>) -> Option<Uri> {
        let mut s = String::with_capacity(
            self.origin.len() + self.prefix.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        s.push_str(&self.origin);
        s.push_str(&self.prefix);
        s.push_str(path);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        s.parse().ok()
    }

    /// Sends the request; the response head must arrive within `upstream.timeout`, the body
    /// then streams.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        // The pooled client speaks HTTP/1.1 to the API beside us, whatever the client spoke.
        *req.version_mut() = Version::HTTP_11;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect),
            Ok(Err(e)) if body_limit::is_too_large(&e) => Err(UpstreamError::BodyTooLarge),
            Ok(Err(_)) => Err(UpstreamError::Protocol),
        }
    }
}

/// The upstream's response body, passed through frame by frame. A failure mid-body (the API
/// reset or closed the connection before the announced length) cannot change the status already
/// sent: it is counted (`fapi_guard_upstream_errors_total{kind="body"}`) and logged, and the
/// error propagates so the client's connection is aborted rather than ended as if complete.
pub struct WatchedBody {
    inner: Incoming,
    metrics: Arc<Metrics>,
    interaction_id: String,
}

impl WatchedBody {
    pub fn new(inner: Incoming, metrics: Arc<Metrics>, interaction_id: &str) -> Self {
        Self {
            inner,
            metrics,
            interaction_id: interaction_id.to_owned(),
        }
    }
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            this.metrics.upstream_error("body");
            tracing::warn!(interaction_id = %this.interaction_id, error = %e, "upstream body failed");
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
