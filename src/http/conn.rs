//! Open connections: which of them wait for a request and since when, a limit per listener that
//! makes room by closing the one that has waited longest, and one deadline per request (SPEC §2,
//! §6.8).
//!
//! A connection is *waiting* from its accept, or from the end of its last response, until a
//! handler holds a whole request (the intake marks that after the body; the admin handler at
//! once). A request starts with its first byte; from then on it has `request_timeout` to be
//! received, handled and answered. Everything that changes a connection's state happens while
//! its own task polls it, so the task sees every change and re-arms one timer; the accept loop
//! only reads the states when it must make room.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::framing;
use super::metrics::ListenerMetrics;
use super::response::{Body, LogText};

/// The largest request head (request line and headers) a connection buffers; longer heads get
/// hyper's 431. Webhook heads are a few hundred bytes; this bounds what a waiting connection can
/// make the daemon hold.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long past its deadline a request may still hold its connection while a handler finishes
/// (handlers bound their own waits by the deadline; this is the backstop).
const HANDLER_MARGIN: Duration = Duration::from_secs(1);

const NOT_WAITING: u64 = u64::MAX;

/// `t + d`, or about a century on when a configured duration is too long to add.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(100 * 365 * 86400))
}

const IDLE: u8 = 0;
const RECEIVING_HEAD: u8 = 1;
const IN_HANDLER: u8 = 2;

/// What a handler gets besides the request.
pub struct Ctx {
    pub peer: SocketAddr,
    /// When the request's first byte arrived.
    pub started: Instant,
    /// `started + request_timeout`: the request must be answered by then.
    pub deadline: Instant,
    both_lengths: bool,
    conn: Arc<ConnState>,
}

impl Ctx {
    /// The whole request is in hand: the connection no longer counts as waiting, so it is not
    /// closed to make room.
    pub fn received(&self) {
        self.conn
            .waiting_since
            .store(NOT_WAITING, Ordering::Relaxed);
    }

    /// The request's head carried both `Content-Length` and `Transfer-Encoding`: two parsers
    /// could frame its body differently (request smuggling), so it is refused. Every head on
    /// the connection is seen, kept-alive and pipelined ones too ([`super::framing`]).
    pub fn both_lengths(&self) -> bool {
        self.both_lengths
    }
}

/// One connection's state, written by its own task and read by the accept loop.
struct ConnState {
    epoch: Instant,
    phase: AtomicU8,
    /// Microseconds since `epoch`, or [`NOT_WAITING`].
    waiting_since: AtomicU64,
    /// Microseconds since `epoch` of the current request's first byte.
    started: AtomicU64,
    /// The raw request stream as read so far, and a verdict per head on it (hyper drops one of
    /// `Content-Length` and `Transfer-Encoding`, so only the raw head tells it had both).
    /// Written by the socket's reads, taken by each request as hyper hands it over; both run
    /// in the connection's own task.
    framing: Mutex<framing::Scan>,
    evict: CancellationToken,
}

impl ConnState {
    fn new(epoch: Instant, now: Instant) -> ConnState {
        let s = ConnState {
            epoch,
            phase: AtomicU8::new(IDLE),
            waiting_since: AtomicU64::new(0),
            started: AtomicU64::new(0),
            framing: Mutex::new(framing::Scan::default()),
            evict: CancellationToken::new(),
        };
        s.waiting_since.store(s.micros(now), Ordering::Relaxed);
        s
    }

    fn framing(&self) -> std::sync::MutexGuard<'_, framing::Scan> {
        self.framing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn micros(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX - 1)
    }

    fn at(&self, micros: u64) -> Instant {
        self.epoch + Duration::from_micros(micros)
    }

    /// Bytes arrived: on an idle connection that is the first byte of a request. Returns the
    /// phase they arrived in.
    fn on_bytes(&self) -> u8 {
        let phase = self.phase.load(Ordering::Relaxed);
        if phase == IDLE {
            self.started
                .store(self.micros(Instant::now()), Ordering::Relaxed);
            self.phase.store(RECEIVING_HEAD, Ordering::Relaxed);
        }
        phase
    }

    /// hyper has parsed a head and calls the handler; returns when the request started. A
    /// request read ahead with an earlier one (pipelining) starts now.
    fn enter_handler(&self) -> Instant {
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.started
                .store(self.micros(Instant::now()), Ordering::Relaxed);
        }
        self.phase.store(IN_HANDLER, Ordering::Relaxed);
        self.at(self.started.load(Ordering::Relaxed))
    }

    /// The handler answered: the connection waits for the next request from now on.
    fn leave_handler(&self) {
        self.phase.store(IDLE, Ordering::Relaxed);
        self.waiting_since
            .store(self.micros(Instant::now()), Ordering::Relaxed);
    }

    /// When this connection is to be closed if nothing changes.
    fn deadline(&self, timeout: Duration) -> Instant {
        match self.phase.load(Ordering::Relaxed) {
            IDLE => {
                // Idle keep-alive: closed after request_timeout (waiting_since is set then).
                let since = self.waiting_since.load(Ordering::Relaxed);
                later(
                    self.at(if since == NOT_WAITING { 0 } else { since }),
                    timeout,
                )
            }
            RECEIVING_HEAD => later(self.at(self.started.load(Ordering::Relaxed)), timeout),
            _ => later(
                self.at(self.started.load(Ordering::Relaxed)),
                timeout.saturating_add(HANDLER_MARGIN),
            ),
        }
    }
}

/// The open connections of one listener.
pub struct Tracker {
    pub listener: &'static str,
    pub limit: usize,
    epoch: Instant,
    conns: Mutex<Conns>,
    metrics: ListenerMetrics,
}

#[derive(Default)]
struct Conns {
    next: u64,
    open: std::collections::HashMap<u64, Arc<ConnState>>,
    /// Closed for room / refused since the last warning, and when that was.
    evicted: u64,
    refused: u64,
    warned: Option<Instant>,
}

/// At most one warning a minute about a full listener: under a flood, one line per connection
/// would itself be a flood.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A connection admitted by [`Tracker::admit`].
pub struct Admitted {
    id: u64,
    state: Arc<ConnState>,
}

impl Tracker {
    pub fn new(listener: &'static str, limit: usize) -> Tracker {
        Tracker {
            listener,
            limit: limit.max(1),
            epoch: Instant::now(),
            conns: Mutex::new(Conns::default()),
            metrics: ListenerMetrics::new(listener),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a new connection in. At the limit, the connection that has waited longest without
    /// a whole request is closed to make room; when none is waiting, the new one is refused
    /// (`None`). Either counts in `payhook_connections_refused_total`.
    pub fn admit(&self) -> Option<Admitted> {
        let mut conns = self.lock();
        if conns.open.len() >= self.limit {
            self.metrics.refused.increment(1);
            // A scan of at most `limit` atomics, only while full: cheaper than keeping an
            // ordered index up to date on every request.
            let oldest = conns
                .open
                .iter()
                .filter_map(|(id, s)| {
                    let w = s.waiting_since.load(Ordering::Relaxed);
                    (w != NOT_WAITING).then_some((w, *id))
                })
                .min();
            let made_room = match oldest.and_then(|(_, victim)| conns.open.remove(&victim)) {
                Some(s) => {
                    s.evict.cancel();
                    conns.evicted += 1;
                    true
                }
                None => {
                    conns.refused += 1;
                    false
                }
            };
            let now = Instant::now();
            if conns
                .warned
                .is_none_or(|w| now.duration_since(w) >= WARN_EVERY)
            {
                tracing::warn!(
                    listener = self.listener,
                    limit = self.limit,
                    closed_for_room = conns.evicted,
                    refused = conns.refused,
                    "connection limit reached: closing the connections that waited longest \
                     without a whole request (counts since the last warning)"
                );
                conns.warned = Some(now);
                conns.evicted = 0;
                conns.refused = 0;
            }
            if !made_room {
                return None;
            }
        }
        let id = conns.next;
        conns.next += 1;
        let state = Arc::new(ConnState::new(self.epoch, Instant::now()));
        conns.open.insert(id, state.clone());
        self.metrics.open.set(conns.open.len() as f64);
        Some(Admitted { id, state })
    }

    fn release(&self, id: u64) {
        let mut conns = self.lock();
        conns.open.remove(&id);
        self.metrics.open.set(conns.open.len() as f64);
    }

    /// Closes every connection still open (the end of a shutdown drain).
    pub fn close_all(&self) {
        let mut conns = self.lock();
        for (_, s) in conns.open.drain() {
            s.evict.cancel();
        }
        self.metrics.open.set(0.0);
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().open.len()
    }
}

/// The socket, telling the connection's state when bytes arrive and showing them to its
/// framing scan.
struct Tracked {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_bytes();
            if let Some(new) = buf.filled().get(before..) {
                self.state.framing().feed(new);
            }
        }
        r
    }
}

impl AsyncWrite for Tracked {
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

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

enum End {
    Done(hyper::Result<()>),
    Evicted,
    Expired(u8),
}

/// The 408 for a request whose head did not arrive in time, written straight to the socket
/// (hyper has no response to give for a head it never parsed).
fn head_timeout_response(timeout: Duration) -> Vec<u8> {
    let body = serde_json::json!({
        "error": "request_timeout",
        "message": format!(
            "headers and body not received within request_timeout ({})",
            humantime::format_duration(timeout)
        ),
    })
    .to_string();
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves one admitted connection until it ends, is evicted, or runs past its deadline.
pub async fn run<H, F>(
    tracker: Arc<Tracker>,
    admitted: Admitted,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>, Ctx) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let state = admitted.state;
    let service = {
        let state = state.clone();
        service_fn(move |req| {
            let started = state.enter_handler();
            let ctx = Ctx {
                peer,
                started,
                deadline: later(started, timeout),
                both_lengths: state.framing().take().unwrap_or(false),
                conn: state.clone(),
            };
            let fut = handler(req, ctx);
            let state = state.clone();
            async move {
                let resp = fut.await;
                state.leave_handler();
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let io = TokioIo::new(Tracked {
        inner: stream,
        state: state.clone(),
    });
    let mut conn = hyper::server::conn::http1::Builder::new()
        // The deadline below covers the head; hyper's own timer would start at another moment.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(io, service);

    let mut timer = pin!(tokio::time::sleep_until(state.deadline(timeout)));
    let mut evicted = pin!(state.evict.cancelled());
    let mut stopping = pin!(shutdown.cancelled());
    let mut graceful = false;
    let end = poll_fn(|cx| {
        if evicted.as_mut().poll(cx).is_ready() {
            return Poll::Ready(End::Evicted);
        }
        if !graceful && stopping.as_mut().poll(cx).is_ready() {
            graceful = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        if let Poll::Ready(r) = Pin::new(&mut conn).poll(cx) {
            return Poll::Ready(End::Done(r));
        }
        // The connection's state changes only inside the poll above: re-arm for what it is now.
        let deadline = state.deadline(timeout);
        if deadline != timer.deadline() {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(End::Expired(state.phase.load(Ordering::Relaxed)));
        }
        Poll::Pending
    })
    .await;

    match end {
        End::Done(Ok(())) | End::Evicted => {}
        End::Done(Err(e)) => {
            tracing::debug!(listener = tracker.listener, %peer, error = %LogText(&e.to_string()), "connection error");
        }
        End::Expired(RECEIVING_HEAD) => {
            // Best effort, never waiting: a client that does not read gets the connection closed.
            let stream = conn.into_parts().io.into_inner().inner;
            let _ = stream.try_write(&head_timeout_response(timeout));
            tracing::info!(listener = tracker.listener, %peer, status = 408, outcome = "request_timeout", "request head not received within request_timeout");
        }
        End::Expired(IN_HANDLER) => {
            tracing::warn!(listener = tracker.listener, %peer, "request still in its handler past request_timeout; connection closed");
        }
        End::Expired(_) => {} // idle keep-alive past request_timeout
    }
    tracker.release(admitted.id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_listener_closes_the_longest_waiting_connection() {
        let t = Tracker::new("test", 3);
        let a = t.admit().expect("room");
        tokio::time::sleep(Duration::from_millis(2)).await;
        let b = t.admit().expect("room");
        tokio::time::sleep(Duration::from_millis(2)).await;
        let c = t.admit().expect("room");
        // `a` has a whole request in hand: `b` is the one that waited longest.
        a.state.waiting_since.store(NOT_WAITING, Ordering::Relaxed);
        let d = t.admit().expect("room made");
        assert!(b.state.evict.is_cancelled());
        assert!(!a.state.evict.is_cancelled() && !c.state.evict.is_cancelled());
        assert_eq!(t.open(), 3);
        // Nobody waiting: the newcomer is refused.
        for s in [&c.state, &d.state] {
            s.waiting_since.store(NOT_WAITING, Ordering::Relaxed);
        }
        assert!(t.admit().is_none());
        assert_eq!(t.open(), 3);
        t.release(a.id);
        assert!(t.admit().is_some());
    }

    #[test]
    fn deadline_follows_the_request() {
        let epoch = Instant::now();
        let s = ConnState::new(epoch, epoch);
        let t = Duration::from_secs(10);
        assert_eq!(s.deadline(t), epoch + t);
        std::thread::sleep(Duration::from_millis(5));
        s.on_bytes();
        let started = s.at(s.started.load(Ordering::Relaxed));
        assert!(started > epoch);
        assert_eq!(s.deadline(t), started + t);
        // More bytes of the same request do not move its start.
        std::thread::sleep(Duration::from_millis(5));
        s.on_bytes();
        assert_eq!(s.enter_handler(), started);
        assert_eq!(s.deadline(t), started + t + HANDLER_MARGIN);
        s.leave_handler();
        assert!(s.deadline(t) > started + t);
        assert_eq!(s.phase.load(Ordering::Relaxed), IDLE);
    }
}
