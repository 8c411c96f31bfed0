//! A watch thread: every change under a prefix, from a revision on, handed to whoever
//! follows it: the load balancers (to the control thread, which applies them as it
//! applies an API change), the other nodes' health views, the node list. Blocking etcd
//! calls live here, not in the control loop.
//!
//! When the watch breaks (etcd down, no quorum, or the thread fell behind etcd's
//! compaction) the thread reads the whole prefix again (a `Resync`) and watches on
//! from that read's revision: after any gap it sends the full state, never a guess.
//! While etcd stays away it retries with a backoff capped at `MAX_BACKOFF`, and the
//! node serves the configuration it has.

use super::etcd::{Etcd, EtcdError, Kv, WatchEvent};
use super::outage::Outage;
use std::io;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A watch that has brought nothing for this long is opened again from the next
/// revision (nothing is missed: etcd replays from there). Over a connection that died
/// without a reset (a partition: silence) nothing would ever arrive, and the node would
/// neither notice that etcd is away nor hear that it is back. One request per idle
/// period per node.
const IDLE_REWATCH: Duration = Duration::from_secs(5);

/// What the watch thread reports.
#[derive(Debug)]
pub enum Remote {
    /// Changes in revision order.
    Events(Vec<WatchEvent>),
    /// Every key under the prefix at `revision` (after a gap): what is absent was deleted.
    Resync { kvs: Vec<Kv>, revision: i64 },
    /// etcd stopped answering (sent once per outage; the next `Resync` ends it).
    Unreachable(String),
}

/// Starts the thread, watching from `start_revision`, or (None: the caller has not read
/// the prefix) reading it whole first. `what` names what is followed, in logs.
/// `deliver` hands a report on; false when nobody takes them any more, which ends the
/// thread. So does `stop` returning true, checked while the watch is idle.
pub fn spawn(
    etcd: Etcd,
    prefix: Vec<u8>,
    start_revision: Option<i64>,
    what: &'static str,
    stop: impl Fn() -> bool + Send + 'static,
    deliver: impl FnMut(Remote) -> bool + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("clb-cluster-watch".into())
        .spawn(move || {
            let mut at = Following {
                next: start_revision.unwrap_or_default(),
                outage: Outage::new(MIN_BACKOFF, MAX_BACKOFF),
                what,
                stop,
                deliver,
            };
            if start_revision.is_some() && !at.watch(&etcd, &prefix) {
                return;
            }
            while at.resync(&etcd, &prefix) && at.watch(&etcd, &prefix) {}
        })
}

/// Where the thread stands between watches.
struct Following<S, D> {
    next: i64,
    outage: Outage,
    what: &'static str,
    stop: S,
    deliver: D,
}

impl<S: Fn() -> bool, D: FnMut(Remote) -> bool> Following<S, D> {
    /// Watches until the stream breaks. False when the thread is to end.
    fn watch(&mut self, etcd: &Etcd, prefix: &[u8]) -> bool {
        let mut watch = match etcd.watch(prefix, self.next) {
            Ok(watch) => watch,
            Err(e) => return self.failed(&e),
        };
        let mut heard = Instant::now();
        loop {
            match watch.next() {
                Ok(events) if events.is_empty() => {
                    if (self.stop)() {
                        return false;
                    }
                    if heard.elapsed() < IDLE_REWATCH {
                        continue;
                    }
                    match etcd.watch(prefix, self.next) {
                        Ok(fresh) => {
                            watch = fresh;
                            heard = Instant::now();
                        }
                        Err(e) => return self.failed(&e),
                    }
                }
                Ok(events) => {
                    heard = Instant::now();
                    self.next = events.last().map_or(self.next, |e| e.kv.mod_revision + 1);
                    if !(self.deliver)(Remote::Events(events)) {
                        return false;
                    }
                }
                Err(EtcdError::Compacted { compact_revision }) => {
                    log::warn!(
                        "cluster: following {}: the watch fell behind etcd's compaction \
                         (revision {compact_revision}); reading it whole again",
                        self.what
                    );
                    return true;
                }
                Err(e) => return self.failed(&e),
            }
        }
    }

    /// Reads everything again, as often as it takes, to watch on from there. False
    /// when the thread is to end.
    fn resync(&mut self, etcd: &Etcd, prefix: &[u8]) -> bool {
        loop {
            match etcd.range_prefix(prefix) {
                Ok((kvs, revision)) => {
                    if let Some(lasted) = self.outage.ended() {
                        log::info!(
                            "cluster: following {} again after {:.1} s; resynced at revision {revision}",
                            self.what,
                            lasted.as_secs_f64()
                        );
                    }
                    self.next = revision + 1;
                    return (self.deliver)(Remote::Resync { kvs, revision });
                }
                Err(e) => {
                    if !self.failed(&e) {
                        return false;
                    }
                }
            }
        }
    }

    /// Logs (loudly once per outage), reports the outage's start, and waits the
    /// backoff. False when the thread is to end.
    fn failed(&mut self, what: &EtcdError) -> bool {
        if self.outage.failed() {
            log::warn!(
                "cluster: following {}: {what}; this node goes on with what it has, retrying",
                self.what
            );
            if !(self.deliver)(Remote::Unreachable(what.to_string())) {
                return false;
            }
        } else {
            log::debug!("cluster: following {}: still failing: {what}", self.what);
        }
        std::thread::sleep(self.outage.backoff());
        !(self.stop)()
    }
}
