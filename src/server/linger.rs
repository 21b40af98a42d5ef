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

    /// A server that reads 16 bytes, answers and closes, while the client sends `body` bytes
    /// and then reads. Small socket buffers make the kernel's behaviour deterministic: closing
    /// with unread input resets the connection and the client's write or read fails.
    async fn early_answer(linger: bool, body: usize) -> std::io::Result<Vec<u8>> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        socket.bind("127.0.0.1:0".parse().expect("addr"))?;
        let listener = socket.listen(8)?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.expect("accept");
            let mut s = Lingering::new(s);
            let mut first = [0u8; 16];
            s.read_exact(&mut first).await.expect("read");
            s.write_all(b"answer").await.expect("write");
            let t = Instant::now();
            if linger {
                s.shutdown().await.expect("shutdown");
            }
            drop(s);
            t.elapsed()
        });
        let c = tokio::net::TcpSocket::new_v4()?;
        c.set_send_buffer_size(4096)?;
        let mut c = c.connect(addr).await?;
        c.write_all(&vec![b'x'; body]).await?;
        let mut got = Vec::new();
        c.read_to_end(&mut got).await?;
        drop(c);
        let lingered = server.await.expect("server");
        assert!(lingered < LINGER_TIME, "{lingered:?}");
        Ok(got)
    }

    /// The client reads the whole answer (no reset) although it was still sending, and the
    /// server's shutdown returns once the client closes. Without lingering the same exchange
    /// fails (the control case, so this test can tell the difference).
    #[tokio::test]
    async fn client_reads_the_answer_while_still_sending() {
        let body = 2 * 1024 * 1024;
        assert_eq!(early_answer(true, body).await.expect("no reset"), b"answer");
        assert!(
            early_answer(false, body).await.is_err(),
            "control: closing with unread input must reset"
        );
    }
}
