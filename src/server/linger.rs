//! Lingering close (RFC 9112 §9.6): when the server closes a connection, it half-closes (so the
//! client sees the end of the response) and keeps reading and discarding what the client still
//! sends, for a bounded time, before closing for good.
//!
//! Without it, closing a socket with unread request bytes in its receive buffer makes the
//! kernel send a TCP reset, which can destroy the response (a 413, a denial given before the
//! body was read) before the client has read it: the client sees ECONNRESET instead of the
//! answer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a closing connection keeps draining the client's input at most.
pub const LINGER_TIME: Duration = Duration::from_secs(2);

/// Bytes discarded at most while lingering (a client still streaming a huge body is cut off).
pub const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// An I/O stream whose shutdown is a lingering close.
pub struct Lingering<S> {
    inner: S,
    state: State,
}

enum State {
    Open,
    Draining {
        deadline: Pin<Box<Sleep>>,
        left: usize,
    },
    Closed,
}

impl<S> Lingering<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            state: State::Open,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Half-close, then drain until the client closes its side, `LINGER_TIME` passes or
    /// `LINGER_BYTES` were discarded. Errors while draining end it quietly: the response is
    /// already out.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    let done = ready!(Pin::new(&mut this.inner).poll_shutdown(cx));
                    if done.is_err() {
                        this.state = State::Closed;
                        return Poll::Ready(done);
                    }
                    this.state = State::Draining {
                        deadline: Box::pin(tokio::time::sleep_until(Instant::now() + LINGER_TIME)),
                        left: LINGER_BYTES,
                    };
                }
                State::Draining { deadline, left } => {
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            *left = left.saturating_sub(buf.filled().len());
                            if *left == 0 {
                                this.state = State::Closed;
                            }
                        }
                        // EOF or an error: the client is gone.
                        Poll::Ready(_) => this.state = State::Closed,
                        Poll::Pending => {
                            ready!(deadline.as_mut().poll(cx));
                            this.state = State::Closed;
                        }
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// The server answers and closes while the client is still sending: the client reads the
    /// whole answer (no reset), and the server's shutdown returns once the client closes.
    #[tokio::test]
    async fn client_reads_the_answer_while_still_sending() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.expect("accept");
            let mut s = Lingering::new(s);
            let mut first = [0u8; 16];
            s.read_exact(&mut first).await.expect("read");
            s.write_all(b"answer").await.expect("write");
            let t = Instant::now();
            s.shutdown().await.expect("shutdown");
            t.elapsed()
        });
        let mut c = TcpStream::connect(addr).await.expect("connect");
        // More than the server reads: without lingering, this unread data causes a reset.
        c.write_all(&[b'x'; 256 * 1024]).await.expect("send");
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.expect("no reset");
        assert_eq!(got, b"answer");
        drop(c);
        let lingered = server.await.expect("server");
        assert!(lingered < LINGER_TIME, "{lingered:?}");
    }
}
