//! Time: wall-clock unix milliseconds for what is stored and shown, and a monotonic clock for
//! heartbeats and timeouts, so an NTP step can neither trip the watchdog nor fake liveness.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Wall-clock unix milliseconds (for rows and messages, never for measuring intervals).
pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Monotonic milliseconds since the process's first look at the clock.
fn mono_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A worker's last sign of life, on the monotonic clock.
#[derive(Debug)]
pub struct Beat(AtomicU64);

impl Default for Beat {
    fn default() -> Self {
        Beat(AtomicU64::new(mono_ms()))
    }
}

impl Beat {
    pub fn touch(&self) {
        self.0.store(mono_ms(), Ordering::Relaxed);
    }

    /// Time since the last [`Beat::touch`].
    pub fn age(&self) -> Duration {
        Duration::from_millis(mono_ms().saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_age() {
        let b = Beat::default();
        std::thread::sleep(Duration::from_millis(20));
        assert!(b.age() >= Duration::from_millis(15));
        b.touch();
        assert!(b.age() < Duration::from_millis(15));
    }
}
