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

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
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
    let mut tasks = vec![tokio::spawn(serve_proxy(
        listener,
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
        tasks.push(tokio::spawn(admin::serve(l, guard.clone(), stop_rx)));
    }
    tracing::info!(%addr, admin = ?admin_addr, "fapi-guard listening");
    Ok(Running {
        addr,
        admin_addr,
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

async fn serve_proxy(
    listener: TcpListener,
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
                let info = Arc::new(ConnInfo { peer, client_cert_sha256: None, tls: false });
                let g = guard.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let g = g.clone();
                    let info = info.clone();
                    async move { Ok::<Response<Body>, Infallible>(g.handle(req, &info).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with error");
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
