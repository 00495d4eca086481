//! The two HTTP listeners. Both take an already bound listener and a shutdown token, so tests and
//! socket activation hand them sockets the same way `serve` does.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod admin;
pub mod conn;
mod framing;
pub mod hooks;
pub mod metrics;
pub mod response;

pub use conn::Ctx;
pub use response::{Body, Rejection};

/// Connections one public listener holds at most (fewer when the file limit is low). Past it, a
/// new connection makes room by closing the one that has waited longest without a whole request.
pub const MAX_PUBLIC_CONNECTIONS: usize = 4096;
/// The same for the admin listener (health checks and scrapes need few).
pub const MAX_ADMIN_CONNECTIONS: usize = 128;
/// The kernel's queue of connections not yet accepted (capped by `net.core.somaxconn`). A burst
/// of connects faster than the accept loop waits there; past it the kernel drops SYNs and the
/// client retries only a second later. Tokio binds with 1024 at most; systemd sockets bring their
/// own `Backlog=` (re-listening on a listening socket only changes its backlog).
const ACCEPT_BACKLOG: i32 = 4096;
/// File descriptors kept for everything but client connections: the store's files, broker
/// connections, the listeners themselves, the runtime.
const FD_RESERVE: u64 = 256;

/// Which listener: its metric label and connection limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Admin,
}

impl Listener {
    pub fn name(self) -> &'static str {
        match self {
            Listener::Public => "public",
            Listener::Admin => "admin",
        }
    }

    pub fn limit(self) -> usize {
        let l = limits();
        match self {
            Listener::Public => l.public,
            Listener::Admin => l.admin,
        }
    }
}

struct Limits {
    public: usize,
    admin: usize,
}

/// Raises the soft file limit to the hard one (once per process) and sizes both listeners' limits
/// under it, so the connection limits are reached before `accept` can fail with EMFILE.
fn limits() -> &'static Limits {
    static LIMITS: OnceLock<Limits> = OnceLock::new();
    LIMITS.get_or_init(|| {
        let soft = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot raise the open file limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .map(|(soft, _)| soft)
                    .unwrap_or(1024)
            }
        };
        let available = usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
        let admin = MAX_ADMIN_CONNECTIONS.min(available / 8).max(1);
        let public = MAX_PUBLIC_CONNECTIONS
            .min(available.saturating_sub(admin))
            .max(1);
        tracing::info!(open_files = soft, public, admin, "connection limits");
        Limits { public, admin }
    })
}

/// Accepts connections until `shutdown`, then stops accepting and lets requests in flight
/// finish for up to `drain`. Every request has `request_timeout` from its first byte; an idle
/// connection is closed after `request_timeout`, or sooner when a new one needs its room.
pub async fn serve<H, F>(
    listener: TcpListener,
    which: Listener,
    shutdown: CancellationToken,
    request_timeout: Duration,
    drain: Duration,
    handler: H,
) where
    H: Fn(Request<Incoming>, Ctx) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    if let Err(e) = socket2::SockRef::from(&listener).listen(ACCEPT_BACKLOG) {
        tracing::warn!(listener = which.name(), error = %e, "cannot enlarge the accept backlog");
    }
    let tracker = Arc::new(conn::Tracker::new(which.name(), which.limit()));
    let tasks = TaskTracker::new();
    loop {
        // Accepting never stops while running: a full listener makes room instead, so idle or
        // slow clients cannot leave new ones waiting in the kernel's backlog.
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(listener = which.name(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(admitted) = tracker.admit() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(conn::run(
            tracker.clone(),
            admitted,
            stream,
            peer,
            request_timeout,
            // A token of its own: the connection polls it on every wake-up, and a shared one
            // would put every connection behind one mutex.
            shutdown.child_token(),
            handler.clone(),
        ));
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
        tracing::warn!(
            listener = which.name(),
            "requests still in flight after {drain:?}; closing them"
        );
        tracker.close_all();
        let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
    }
}
