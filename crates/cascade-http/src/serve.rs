//! The HTTP/1 connections of [`App::serve`](crate::App::serve): accepted one by one, each
//! served on its own task with a header read timeout, and stopped gracefully on shutdown.
//!
//! (`axum::serve` cannot be given a timer, and without one hyper never times out a client that
//! sends its headers a byte at a time, or never finishes them.)

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `router` on `listener` until `shutdown` resolves; then accepts no more connections,
/// lets each one finish the request it is answering, and returns when all are closed or
/// `grace` has passed, whichever comes first (a client that stops reading a long answer, a
/// file or an export, would otherwise hold the shutdown up for good).
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop, stopping) = watch::channel(false);
    // Each connection holds a receiver: when none is left, all are closed.
    let (open, open_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stopping = stopping.clone();
        let held = open_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
            let mut told = false;
            loop {
                tokio::select! {
                    served = conn.as_mut() => {
                        if let Err(e) = served {
                            // Header timeouts, clients gone mid-request: theirs, not ours.
                            tracing::debug!(error = %e, "connection closed");
                        }
                        break;
                    }
                    _ = stopping.wait_for(|s| *s), if !told => {
                        told = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(held);
        });
    }
    drop(listener);
    stop.send_replace(true);
    drop(open_rx);
    if tokio::time::timeout(grace, open.closed()).await.is_err() {
        tracing::warn!(
            connections = open.receiver_count(),
            grace = ?grace,
            "connections still answering after the grace period: they are cut off"
        );
    }
}

/// A failed accept: a client that gave up is skipped; anything else (out of file descriptors)
/// is logged and waited out, as it would fail again at once.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
