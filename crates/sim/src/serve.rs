//! Start-up and shutdown shared by the simulators' HTTP servers.

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Binds 127.0.0.1:`port` (0 for any free port) and returns the listener with the address it
/// got. On failure, the address asked for and the cause, for the simulator's own `Bind` error.
pub(crate) async fn bind(
    port: u16,
) -> Result<(TcpListener, SocketAddr), (SocketAddr, std::io::Error)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| (addr, source))?;
    let addr = listener.local_addr().map_err(|source| (addr, source))?;
    Ok((listener, addr))
}

/// A server task serving `router` on a listener. Stops when dropped (or on `shutdown`).
pub(crate) struct Server {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `router` on `listener` in a task; `name` says which simulator in the log line
    /// written if serving fails.
    pub(crate) fn spawn(listener: TcpListener, router: Router, name: &'static str) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    // A dropped sender means the handle is gone: stop either way.
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "{name} stopped serving");
            }
        });
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops accepting calls and waits for the server task to end.
    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Graceful shutdown waits for open connections; a dropped simulator must not linger.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
