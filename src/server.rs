//! Listeners: the proxy (HTTP/1.1 and HTTP/2) and the admin endpoints, with graceful drain.

mod linger;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use http::{Method, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin;
use crate::mtls::ForwardedFormat;
use crate::proxy::{ConnInfo, Guard, Relayed};
use crate::response::Body;
use crate::tls::{PeerCertificate, TlsAcceptor, client_cert};
use linger::Lingering;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started proxy: its bound addresses and the handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// The read-only metrics listener (`admin.metrics_address`), when configured.
    pub metrics_addr: Option<SocketAddr>,
    pub guard: Arc<Guard>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Graceful shutdown: readiness goes to 503, listeners stop accepting, in-flight requests
    /// finish (bounded by `grace`).
    pub async fn shutdown(self, grace: Duration) {
        self.guard.set_draining();
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(grace + Duration::from_secs(1), all)
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period elapsed with connections still open");
        }
    }
}

/// Binds the proxy and admin listeners and serves until `shutdown`.
pub async fn start(guard: Arc<Guard>, grace: Duration) -> Result<Running, StartError> {
    let cfg = guard.config();
    let listen = cfg.listen.address;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let (stop, stop_rx) = watch::channel(false);
    let tls = match &cfg.listen.tls {
        None => None,
        Some(s) => {
            let acceptor = Arc::new(TlsAcceptor::new(s.clone())?);
            // Certificate files are re-read on change; the watcher lives as long as the listener.
            let watcher = acceptor
                .watch()
                .map_err(|e| tracing::warn!(error = %e, "certificate watch unavailable"))
                .ok();
            Some((acceptor, watcher))
        }
    };
    let mut tasks = vec![tokio::spawn(serve_proxy(
        listener,
        tls,
        guard.clone(),
        stop_rx.clone(),
        grace,
    ))];

    let mut admin_addr = None;
    if let Some(a) = &cfg.admin {
        let l = TcpListener::bind(a.address)
            .await
            .map_err(|source| StartError::Bind {
                addr: a.address,
                source,
            })?;
        admin_addr = l.local_addr().ok();
        tasks.push(tokio::spawn(admin::serve(
            l,
            guard.clone(),
            stop_rx.clone(),
        )));
    }
    let mut metrics_addr = None;
    if let Some(m) = cfg.admin.as_ref().and_then(|a| a.metrics_address) {
        let l = TcpListener::bind(m)
            .await
            .map_err(|source| StartError::Bind { addr: m, source })?;
        metrics_addr = l.local_addr().ok();
        let surface = admin::Surface::ReadOnly;
        tasks.push(tokio::spawn(admin::serve_surface(
            l,
            guard.clone(),
            stop_rx,
            surface,
        )));
    }
    tracing::info!(%addr, admin = ?admin_addr, "fapi-guard listening");
    Ok(Running {
        addr,
        admin_addr,
        metrics_addr,
        guard,
        stop,
        tasks,
    })
}

fn builder(guard: &Guard) -> auto::Builder<TokioExecutor> {
    let limits = guard.config().listen.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper's own header limit sits well above ours, so that oversized headers reach the guard
    // and get a 431 with an interaction id (and an audit record) rather than a bare close.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size((limits.max_header_bytes * 4).max(64 * 1024));
    // HTTP/2 abuse bounds. Rapid reset (CVE-2023-44487): streams a client opens and resets
    // before we answer count against `max_pending_accept_reset_streams`, streams we reset for
    // protocol errors against `max_local_error_reset_streams`; past either the connection is
    // closed with GOAWAY. The header-list limit also bounds CONTINUATION floods (h2 stops
    // buffering a header block past it).
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes * 4).unwrap_or(u32::MAX))
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// Concurrent HTTP/2 streams per connection (RFC 9113 §5.1.2).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// Client-reset streams awaiting accept before the connection is refused (rapid reset).
pub const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the server may reset for protocol errors before closing the connection.
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 64;

/// The verified client certificate as the API gets it, in the configured forwarded-certificate
/// format, else RFC 9440 (`tls::client_cert`).
fn cert_header(guard: &Guard, leaf: &PeerCertificate) -> Option<HeaderValue> {
    let format = guard
        .config()
        .listen
        .forwarded_client_cert
        .as_ref()
        .map_or(ForwardedFormat::Rfc9440, |f| f.format);
    client_cert::header_value(&leaf.der, &leaf.sha256, format)
}

type Tls = Option<(Arc<TlsAcceptor>, Option<notify::RecommendedWatcher>)>;

async fn serve_proxy(
    listener: TcpListener,
    tls: Tls,
    guard: Arc<Guard>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let builder = builder(&guard);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let g = guard.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let tls = tls.as_ref().map(|(a, _)| a.clone());
                tokio::spawn(async move {
                    match tls {
                        None => {
                            let info = ConnInfo {
                                peer,
                                client_cert_sha256: None,
                                client_cert_header: None,
                                tls: false,
                            };
                            let io = TokioIo::new(Lingering::new(stream));
                            serve_conn(&builder, watcher, io, g, info).await;
                        }
                        // The handshake runs in the connection's task, so a slow client cannot
                        // stall the accept loop; the leaf certificate is hashed and encoded for
                        // the upstream once here.
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok((tls_stream, leaf)) => {
                                let info = ConnInfo {
                                    peer,
                                    client_cert_sha256: leaf.as_ref().map(|l| l.sha256),
                                    client_cert_header: leaf.as_ref().and_then(|l| cert_header(&g, l)),
                                    tls: true,
                                };
                                let io = TokioIo::new(Lingering::new(tls_stream));
                                serve_conn(&builder, watcher, io, g, info).await;
                            }
                            Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        },
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing remaining connections");
    }
}

/// An HTTP/1.x request that carries a body: when the proxy answers it itself (a denial, a 413,
/// a timeout), the body may be partly unread, so the connection cannot be reused (RFC 9112
/// §9.6: `Connection: close`, then the lingering close). A `CONNECT` or upgrade never reaches
/// an upstream either way. HTTP/2 resets the unread stream instead (RFC 9113 §8.1).
fn closes_unless_relayed(req: &Request<Incoming>) -> bool {
    req.version() <= Version::HTTP_11
        && (!req.body().is_end_stream() || req.method() == Method::CONNECT)
}

async fn serve_conn<I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    guard: Arc<Guard>,
    info: ConnInfo,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let svc = service_fn(move |req: Request<Incoming>| {
        let g = guard.clone();
        let info = info.clone();
        let close = closes_unless_relayed(&req);
        async move {
            let mut resp = g.handle(req, &info).await;
            if close && resp.extensions().get::<Relayed>().is_none() {
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<Response<Body>, Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(io, svc).into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with error");
    }
}
