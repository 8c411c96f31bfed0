//! A retrying helper thread's account of an etcd outage: when it began (the first
//! failure is the one worth a warning; the retries are quiet), the pause before the next
//! try (doubling from `min` up to `max`), and how long it lasted when a try succeeds
//! again (worth one line). The cluster's threads (the watches, the lease, the health
//! publisher) each keep one.

use std::time::{Duration, Instant};

pub struct Outage {
    since: Option<Instant>,
    backoff: Duration,
    min: Duration,
    max: Duration,
}

impl Outage {
    pub fn new(min: Duration, max: Duration) -> Outage {
        Outage {
            since: None,
            backoff: min,
            min,
            max: max.max(min),
        }
    }

    /// Whether the last try failed.
    pub fn is_on(&self) -> bool {
        self.since.is_some()
    }

    /// The pause before the next try.
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// A try failed: true when this failure begins the outage (the caller warns then).
    /// The pause before the next try doubles, up to `max`, from the second failure on.
    pub fn failed(&mut self) -> bool {
        if self.since.is_some() {
            self.backoff = (self.backoff * 2).min(self.max);
            return false;
        }
        self.since = Some(Instant::now());
        true
    }

    /// A try succeeded: how long the outage lasted, if there was one.
    pub fn ended(&mut self) -> Option<Duration> {
        self.backoff = self.min;
        self.since.take().map(|since| since.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_doubles_to_the_cap_and_ends() {
        let mut outage = Outage::new(Duration::from_millis(100), Duration::from_millis(300));
        assert_eq!(outage.ended(), None);
        assert!(outage.failed());
        assert_eq!(outage.backoff(), Duration::from_millis(100));
        assert!(!outage.failed());
        assert_eq!(outage.backoff(), Duration::from_millis(200));
        assert!(!outage.failed());
        assert_eq!(outage.backoff(), Duration::from_millis(300));
        assert!(outage.is_on());
        assert!(outage.ended().is_some());
        assert!(!outage.is_on());
        assert_eq!(outage.backoff(), Duration::from_millis(100));
    }
}
