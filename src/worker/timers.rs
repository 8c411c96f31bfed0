//! Per-worker deadlines.
//!
//! Each connection keeps its own `deadline` and at most one entry in this heap. Activity
//! only moves the connection's deadline (a store, no heap work); when an entry comes due
//! the worker compares it with the connection's current deadline and either acts or
//! re-arms it. So the per-request cost of timeouts is nothing, and the heap holds one
//! entry per connection at most. An entry for a connection that has since closed is
//! recognised by its token generation and ignored. Granularity is the poll timeout,
//! rounded up to the next millisecond.

use mio::Token;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Timers {
    pub fn arm(&mut self, at: Instant, token: Token) {
        self.heap.push(Reverse((at, token.0)));
    }

    /// Pops one entry due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Token> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, t))| Token(t)),
            _ => None,
        }
    }

    /// How long the poll may sleep; `None` when nothing is armed.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.heap.peek().map(|Reverse((at, _))| {
            let wait = at.saturating_duration_since(now);
            // Round up so a wake-up never lands a hair before the deadline and spins.
            let millis = wait.as_nanos().div_ceil(1_000_000);
            Duration::from_millis(millis.min(u64::MAX as u128) as u64)
        })
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let mut timers = Timers::default();
        let now = Instant::now();
        timers.arm(now + Duration::from_millis(20), Token(2));
        timers.arm(now + Duration::from_millis(10), Token(1));
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.next_timeout(now), Some(Duration::from_millis(10)));
        let later = now + Duration::from_millis(25);
        assert_eq!(timers.pop_due(later), Some(Token(1)));
        assert_eq!(timers.pop_due(later), Some(Token(2)));
        assert!(timers.is_empty());
    }
}
