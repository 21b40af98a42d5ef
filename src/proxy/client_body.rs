//! The request body as it streams to the upstream, remembering whether the *client's* side
//! failed (a broken chunk, a connection cut mid-body). The upstream request then fails too, but
//! the fault is the client's: it is answered 400, not counted as an upstream error (which an
//! attacker could otherwise inflate at will, and which SRE alerts read).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use super::body_limit::{BodyFailure, RequestBody};

/// Wraps `inner`; the flag turns true when the client's side fails (not when the body passes
/// `max_body_bytes`: that is answered 413 by the caller).
pub fn watch(inner: RequestBody) -> (RequestBody, ClientBodyFailed) {
    let failed = ClientBodyFailed(Arc::new(AtomicBool::new(false)));
    let body = Watched {
        inner,
        failed: failed.clone(),
    };
    (body.boxed(), failed)
}

/// Whether the client's body failed while streaming.
#[derive(Debug, Clone)]
pub struct ClientBodyFailed(Arc<AtomicBool>);

impl ClientBodyFailed {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

struct Watched {
    inner: RequestBody,
    failed: ClientBodyFailed,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = BodyFailure;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailure>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(BodyFailure::Client(_)))) = &polled {
            self.failed.0.store(true, Ordering::Relaxed);
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
