//! Listeners: the proxy (HTTP/1.1 and HTTP/2) and the admin endpoints, with graceful drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
use crate::proxy::{ConnInfo, Guard};
use crate::response::Body;
use crate::tls::TlsAcceptor;

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
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes * 4).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
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
                            let info = ConnInfo { peer, client_cert_sha256: None, tls: false };
                            serve_conn(&builder, watcher, TokioIo::new(stream), g, info).await;
                        }
                        // The handshake runs in the connection's task, so a slow client cannot
                        // stall the accept loop; the leaf certificate is hashed once here.
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok((tls_stream, cert)) => {
                                let info = ConnInfo { peer, client_cert_sha256: cert, tls: true };
                                serve_conn(&builder, watcher, TokioIo::new(tls_stream), g, info).await;
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
        async move { Ok::<Response<Body>, Infallible>(g.handle(req, &info).await) }
    });
    let conn = builder.serve_connection(io, svc).into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with error");
    }
}
