//! The per-session request rate limit: a token bucket, and what to do with a frame over it.

use std::time::{Duration, Instant};

/// What to do with a frame that just arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Process it.
    Admit,
    /// Drop it: the session is over its rate limit. `reply` is true for the first drop of a
    /// one-second window, which is answered RATE_LIMITED (later ones are not, so that a flood
    /// is not answered with a flood).
    Limited {
        /// Whether to answer it.
        reply: bool,
    },
    /// Drop it and disconnect: the session kept sending far above its limit.
    Flooding,
    /// Drop it silently: the session is unknown or closing.
    Ignore,
}

/// A token bucket: `rate` requests per second, bursts of `2 * rate`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    window_start: Instant,
    dropped_in_window: u32,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: u32, now: Instant) -> Self {
        TokenBucket {
            tokens: 2.0 * rate as f64,
            last: now,
            window_start: now,
            dropped_in_window: 0,
        }
    }

    /// Takes one request at `now` out of the bucket, refilled at `rate` per second: what to
    /// do with it.
    pub fn admit(&mut self, rate: u32, now: Instant) -> Admission {
        if rate == 0 {
            return Admission::Admit;
        }
        let rate = rate as f64;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(2.0 * rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Admit;
        }
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.dropped_in_window = 0;
        }
        self.dropped_in_window += 1;
        if self.dropped_in_window as f64 > rate {
            Admission::Flooding
        } else {
            Admission::Limited {
                reply: self.dropped_in_window == 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_admits_a_burst_of_twice_the_rate_then_answers_once_then_drops() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        for _ in 0..20 {
            assert_eq!(bucket.admit(10, t0), Admission::Admit);
        }
        assert_eq!(bucket.admit(10, t0), Admission::Limited { reply: true });
        assert_eq!(bucket.admit(10, t0), Admission::Limited { reply: false });
    }

    #[test]
    fn rate_limit_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        for _ in 0..20 {
            bucket.admit(10, t0);
        }
        let later = t0 + Duration::from_millis(500);
        for _ in 0..5 {
            assert_eq!(bucket.admit(10, later), Admission::Admit);
        }
        assert!(matches!(bucket.admit(10, later), Admission::Limited { .. }));
    }

    #[test]
    fn sending_far_over_the_limit_for_a_second_is_flooding() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        let verdicts: Vec<Admission> = (0..31).map(|_| bucket.admit(10, t0)).collect();
        assert_eq!(verdicts[..20], [Admission::Admit; 20]);
        assert_eq!(verdicts[30], Admission::Flooding);
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, t0);
        assert!((0..100_000).all(|_| bucket.admit(0, t0) == Admission::Admit));
    }
}
