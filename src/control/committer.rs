//! The committer thread: runs a store write's round trip (`store::Trip`, an etcd
//! transaction) so that the control thread never waits on the network, and sends the
//! outcome back as `Event::Committed`. One trip at a time: the plane starts the next
//! write only once the last one is answered, so writes stay in order.

use super::server::{ControlHandle, Event};
use super::store::TripOutcome;
use crate::cluster::etcd::EtcdError;
use std::sync::mpsc::{self, Sender};

/// What the plane sends: a trip and the number that comes back with its outcome.
type Job = (u64, Run);
/// A trip's round trip (`store::Trip::run`).
pub type Run = Box<dyn FnOnce() -> TripOutcome + Send>;

pub struct Committer {
    jobs: Sender<Job>,
    next: u64,
}

impl Committer {
    pub fn spawn(control: ControlHandle) -> std::io::Result<Committer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("clb-committer".into())
            .spawn(move || {
                for (ticket, run) in queue {
                    // A write that panicked is still answered (500), and the writes
                    // behind it still go: nothing waits forever for this thread.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                        .unwrap_or_else(|_| {
                            Err(EtcdError::Protocol(
                                "the store write failed unexpectedly".into(),
                            ))
                        });
                    if !control.send(Event::Committed(ticket, outcome)) {
                        return;
                    }
                }
            })?;
        Ok(Committer { jobs, next: 0 })
    }

    /// Starts `run`; its outcome arrives as `Event::Committed` with the ticket returned.
    /// When the thread is gone, `run` is given back, to run here.
    pub fn start(&mut self, run: Run) -> Result<u64, Run> {
        self.next += 1;
        match self.jobs.send((self.next, run)) {
            Ok(()) => Ok(self.next),
            Err(mpsc::SendError((_, run))) => Err(run),
        }
    }
}
