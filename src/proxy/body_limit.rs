//! One limit for every request body, whatever its transfer coding, and one
//! bound on the memory all buffered bodies take together.
//!
//! - Every inbound body is wrapped in [`LimitedBody`]: past `limits.max_body_bytes` it fails
//!   with [`BodyFailure::TooLarge`] instead of yielding more. A buffered body then answers 413;
//!   a streamed one aborts the upstream request (hyper drops the upstream connection without
//!   the final chunk, so the API never sees a complete body) and the client gets 413 when the
//!   API had not answered yet. When the API answered before reading the whole body (its
//!   response is already on its way to the client), the upstream connection is still cut at
//!   the limit and the client's response ends early; the `outcome` record carries the status.
//! - Buffering (a JSON body for `match_body`, a form body for the RFC 6750 §2.2 check) first
//!   reserves its worst case (`Content-Length`, else `max_body_bytes`) from a byte budget
//!   (`limits.max_buffered_bytes`). With the budget spent the request is refused with 503
//!   `dependency_unavailable`, counted in `fapi_guard_body_buffer_exhausted_total`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::metrics::Metrics;

/// The request body as the proxy forwards it.
pub type RequestBody = BoxBody<Bytes, BodyFailure>;

/// Why a request body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyFailure {
    #[error("request body exceeds limits.max_body_bytes")]
    TooLarge,
    #[error("reading the request body failed: {0}")]
    Client(#[from] hyper::Error),
}

/// The inbound body, cut off at a byte limit.
pub struct LimitedBody {
    inner: Incoming,
    remaining: usize,
    metrics: Arc<Metrics>,
}

impl LimitedBody {
    pub fn new(inner: Incoming, limit: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            remaining: limit,
            metrics,
        }
    }
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = BodyFailure;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailure>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(f))) => f,
        };
        if let Some(data) = frame.data_ref() {
            if data.len() > self.remaining {
                self.remaining = 0;
                self.metrics.body_too_large();
                return Poll::Ready(Some(Err(BodyFailure::TooLarge)));
            }
            self.remaining -= data.len();
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that may have been buffered, with the budget it holds while it lives.
pub struct BodySlot {
    pub body: RequestBody,
    /// Held until the request is done: the buffered bytes count against the budget meanwhile.
    pub permit: Option<OwnedSemaphorePermit>,
    /// The body was consumed and cannot be forwarded (over the limit, budget spent, client
    /// failed): the request must be refused even on an `audit` route.
    pub spoiled: bool,
}

impl BodySlot {
    pub fn new(body: RequestBody) -> Self {
        Self {
            body,
            permit: None,
            spoiled: false,
        }
    }
}

/// Why a body could not be buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferError {
    TooLarge,
    BudgetSpent,
    /// The client stopped sending or the connection failed.
    Client,
}

/// The byte budget for all buffered request bodies of this process, in KiB permits.
pub struct BufferBudget {
    permits: Arc<Semaphore>,
    max_body_bytes: usize,
}

const UNIT: usize = 1024;

impl BufferBudget {
    pub fn new(max_buffered_bytes: usize, max_body_bytes: usize) -> Self {
        let units = max_buffered_bytes
            .div_ceil(UNIT)
            .min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(units)),
            max_body_bytes,
        }
    }

    /// Reads the whole body of `slot` into memory within the budget and puts the identical
    /// bytes back for the upstream. `declared` is the `Content-Length`, when given.
    pub async fn buffer(
        &self,
        slot: &mut BodySlot,
        declared: Option<u64>,
        metrics: &Metrics,
    ) -> Result<Bytes, BufferError> {
        // Already buffered (a consent rule read it, now a signature check): the bytes are in
        // memory and paid for; hand them out again without reserving the budget twice.
        if slot.permit.is_some() {
            let taken = std::mem::replace(&mut slot.body, empty());
            let bytes = taken
                .collect()
                .await
                .map_err(|_| BufferError::Client)?
                .to_bytes();
            slot.body = full(bytes.clone());
            return Ok(bytes);
        }
        let worst = declared
            .and_then(|n| usize::try_from(n).ok())
            .map_or(self.max_body_bytes, |n| n.min(self.max_body_bytes));
        let units = u32::try_from(worst.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        let permit = match Arc::clone(&self.permits).try_acquire_many_owned(units) {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                metrics.buffer_exhausted();
                slot.spoiled = true;
                return Err(BufferError::BudgetSpent);
            }
        };
        let taken = std::mem::replace(&mut slot.body, empty());
        match taken.collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                slot.body = full(bytes.clone());
                slot.permit = Some(permit);
                Ok(bytes)
            }
            Err(e) => {
                slot.spoiled = true;
                Err(match e {
                    BodyFailure::TooLarge => BufferError::TooLarge,
                    BodyFailure::Client(_) => BufferError::Client,
                })
            }
        }
    }

    /// Budget left, in bytes (tests).
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits() * UNIT
    }
}

/// Wraps the inbound body in its limit.
pub fn limited(body: Incoming, limit: usize, metrics: Arc<Metrics>) -> RequestBody {
    LimitedBody::new(body, limit, metrics).boxed()
}

/// A buffered body for the upstream.
pub fn full(bytes: Bytes) -> RequestBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> RequestBody {
    full(Bytes::new())
}

/// Whether `e` (from the upstream client) was caused by the request body passing its limit.
pub fn is_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if matches!(
            err.downcast_ref::<BodyFailure>(),
            Some(BodyFailure::TooLarge)
        ) {
            return true;
        }
        cur = err.source();
    }
    false
}
