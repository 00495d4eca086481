//! Logs go to stderr (journald under systemd). `RUST_LOG` overrides the default level.
//!
//! A worker never writes to stderr itself: lines go through a bounded queue to a writer thread,
//! and when stderr stalls (a wedged journald, a full pipe) lines are dropped and counted
//! (`payhook_log_lines_dropped_total`) rather than blocking intake. No line is longer than
//! [`MAX_LINE_BYTES`], whatever a request put into it.

use std::io;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// The longest line written; longer ones are cut and end in `…`.
pub const MAX_LINE_BYTES: usize = 4096;

/// Lines waiting for stderr at most; past them new lines are dropped. At the 4 KiB cap that is
/// 32 MiB at worst, a few hundred KiB for ordinary lines.
const QUEUE_LINES: usize = 8192;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Flushes the queued lines when dropped: hold it until the process exits.
#[must_use = "dropping the guard stops logging; hold it for the life of the process"]
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

/// Lines dropped so far because stderr did not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
}

pub fn init(format: LogFormat) -> LogGuard {
    // The writer thread flushes whenever its queue runs empty, so lines never wait in the
    // buffer; under load it writes many lines per system call instead of one each.
    init_with(
        format,
        io::BufWriter::with_capacity(64 * 1024, io::stderr()),
    )
}

fn init_with<W: io::Write + Send + 'static>(format: LogFormat, out: W) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,lapin=warn,amq_protocol=warn"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("payhook-log")
        .finish(out);
    let counter = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Capped(writer));
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    if installed.is_err() {
        // A subscriber was already installed (tests running a daemon in process): keep it.
        return LogGuard(None);
    }
    let _ = DROPPED.set(counter);
    LogGuard(Some(guard))
}

/// Hands each formatted line to the queue, cut to [`MAX_LINE_BYTES`].
struct Capped(NonBlocking);

impl<'a> MakeWriter<'a> for Capped {
    type Writer = CappedWriter;

    fn make_writer(&'a self) -> CappedWriter {
        CappedWriter(self.0.clone())
    }
}

struct CappedWriter(NonBlocking);

impl io::Write for CappedWriter {
    /// The formatter writes one whole line per call; a longer one is cut here.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() <= MAX_LINE_BYTES {
            return self.0.write(buf);
        }
        const MARK: &[u8] = "…\n".as_bytes();
        let mut end = MAX_LINE_BYTES - MARK.len();
        // Cut at a UTF-8 character boundary (continuation bytes are 0b10xx_xxxx).
        while end > 0 && buf.get(end).is_some_and(|b| b & 0xC0 == 0x80) {
            end -= 1;
        }
        let mut line = Vec::with_capacity(end + MARK.len());
        line.extend_from_slice(buf.get(..end).unwrap_or_default());
        line.extend_from_slice(MARK);
        self.0.write(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let sink = Sink::default();
        let (nb, guard) = tracing_appender::non_blocking(sink.clone());
        let mut w = CappedWriter(nb);
        let long = format!("{}\n", "é".repeat(10_000));
        assert_eq!(w.write(long.as_bytes()).unwrap(), long.len());
        w.write_all(b"short\n").unwrap();
        drop(w);
        drop(guard); // flushes
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).expect("valid UTF-8");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out:?}");
        assert!(lines[0].len() < MAX_LINE_BYTES && lines[0].ends_with('…'));
        assert_eq!(lines[1], "short");
    }

    /// A writer that never returns, like stderr into a pipe nobody reads.
    struct Stalled(Arc<std::sync::Barrier>);

    impl io::Write for Stalled {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            self.0.wait();
            std::thread::park();
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stderr_drops_lines_instead_of_blocking() {
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let (nb, _guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(16)
            .finish(Stalled(barrier.clone()));
        let counter = nb.error_counter();
        let mut w = CappedWriter(nb);
        w.write_all(b"first\n").unwrap();
        barrier.wait(); // the writer thread is now stuck in its first write
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            w.write_all(b"line\n").unwrap();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            counter.dropped_lines() >= 1000 - 16,
            "{}",
            counter.dropped_lines()
        );
        // The guard's drop waits a bounded time for the stuck writer.
        std::mem::forget(_guard);
    }
}
