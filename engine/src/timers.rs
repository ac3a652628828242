//! One-shot and repeating timers over a state `S`, run by the tick loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A timer's callback.
pub type TimerFn<S> = fn(&mut S, Instant);

/// Identifies a scheduled timer, to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(u64);

struct Timer<S> {
    id: TimerId,
    period: Option<Duration>,
    callback: TimerFn<S>,
}

/// Timers ordered by due time.
pub struct Timers<S> {
    heap: BinaryHeap<Reverse<(Instant, TimerId)>>,
    timers: std::collections::HashMap<TimerId, Timer<S>>,
    next_id: u64,
}

impl<S> Default for Timers<S> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            timers: std::collections::HashMap::new(),
            next_id: 0,
        }
    }
}

impl<S> Timers<S> {
    /// Runs `callback` once, `delay` after `now`.
    pub fn once(&mut self, now: Instant, delay: Duration, callback: TimerFn<S>) -> TimerId {
        self.insert(now + delay, None, callback)
    }

    /// Runs `callback` every `period`, the first time `period` after `now`.
    pub fn repeat(&mut self, now: Instant, period: Duration, callback: TimerFn<S>) -> TimerId {
        let period = period.max(Duration::from_millis(1));
        self.insert(now + period, Some(period), callback)
    }

    /// Cancels a timer; false when it already ran (one-shot) or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.timers.remove(&id).is_some()
    }

    /// Timers scheduled.
    pub fn len(&self) -> usize {
        self.timers.len()
    }

    /// Whether no timer is scheduled.
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    fn insert(&mut self, due: Instant, period: Option<Duration>, callback: TimerFn<S>) -> TimerId {
        self.next_id += 1;
        let id = TimerId(self.next_id);
        self.timers.insert(
            id,
            Timer {
                id,
                period,
                callback,
            },
        );
        self.heap.push(Reverse((due, id)));
        id
    }

    /// Takes the next timer due at `now`, rescheduling it first when it repeats. A repeating
    /// timer that fell behind runs once and is rescheduled from `now`, not in a burst.
    pub fn pop_due(&mut self, now: Instant) -> Option<TimerFn<S>> {
        loop {
            let Reverse((due, id)) = *self.heap.peek()?;
            if due > now {
                return None;
            }
            self.heap.pop();
            let Some(timer) = self.timers.get(&id) else {
                continue; // cancelled
            };
            let callback = timer.callback;
            match timer.period {
                Some(period) => {
                    let next = if due + period > now {
                        due + period
                    } else {
                        now + period
                    };
                    self.heap.push(Reverse((next, timer.id)));
                }
                None => {
                    self.timers.remove(&id);
                }
            }
            return Some(callback);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bump(n: &mut Vec<&'static str>, _: Instant) {
        n.push("bump");
    }
    fn once(n: &mut Vec<&'static str>, _: Instant) {
        n.push("once");
    }

    fn run(timers: &mut Timers<Vec<&'static str>>, state: &mut Vec<&'static str>, now: Instant) {
        while let Some(f) = timers.pop_due(now) {
            f(state, now);
        }
    }

    #[test]
    fn one_shot_runs_once_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let mut log = Vec::new();
        timers.once(t0, Duration::from_millis(100), once);
        run(&mut timers, &mut log, t0 + Duration::from_millis(99));
        assert!(log.is_empty());
        run(&mut timers, &mut log, t0 + Duration::from_millis(100));
        run(&mut timers, &mut log, t0 + Duration::from_millis(500));
        assert_eq!(log, vec!["once"]);
        assert!(timers.is_empty());
    }

    #[test]
    fn repeating_timer_runs_each_period_and_does_not_burst_after_a_stall() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let mut log = Vec::new();
        timers.repeat(t0, Duration::from_millis(10), bump);
        for ms in [10, 20, 30] {
            run(&mut timers, &mut log, t0 + Duration::from_millis(ms));
        }
        assert_eq!(log.len(), 3);
        run(&mut timers, &mut log, t0 + Duration::from_millis(1000));
        assert_eq!(
            log.len(),
            4,
            "a stalled repeating timer runs once, not 97 times"
        );
    }

    #[test]
    fn cancelled_timer_never_runs() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let mut log = Vec::new();
        let id = timers.repeat(t0, Duration::from_millis(10), bump);
        assert!(timers.cancel(id));
        run(&mut timers, &mut log, t0 + Duration::from_secs(1));
        assert!(log.is_empty());
        assert!(!timers.cancel(id));
    }
}
