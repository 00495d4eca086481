//! The two backoffs of the relay: the session's (a broker that is down is not hammered) and each
//! event's own (SPEC §6.2: an event the broker returns or nacks is retried on a backoff of its
//! own, capped at 5 minutes, never given up, while the events behind it keep flowing).

use std::time::Duration;

/// Capped exponential backoff for reconnecting.
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            next: min,
            min,
            max,
        }
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }

    pub fn take(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// The wait before attempt `attempts + 1` of one event: 1 s, 2 s, 4 s, … up to 5 minutes.
pub fn event_delay(attempts: u32) -> Duration {
    const MAX: Duration = Duration::from_secs(300);
    let exp = attempts.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_delays_are_capped_at_five_minutes() {
        assert_eq!(event_delay(1), Duration::from_secs(1));
        assert_eq!(event_delay(2), Duration::from_secs(2));
        assert_eq!(event_delay(9), Duration::from_secs(256));
        assert_eq!(event_delay(10), Duration::from_secs(300));
        assert_eq!(event_delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn session_backoff_doubles_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        assert_eq!(b.take(), Duration::from_millis(200));
        assert_eq!(b.take(), Duration::from_millis(400));
        assert_eq!(b.take(), Duration::from_millis(800));
        assert_eq!(b.take(), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.take(), Duration::from_millis(200));
    }
}
