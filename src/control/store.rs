//! Where the model is kept between restarts and shared between nodes: one small
//! interface, two stores. `StateFile` (state.rs) is the single-node default; the etcd
//! store (crate::cluster::store) holds the same records, one key per load balancer.
//!
//! The contract the control plane relies on: `commit` returns only once the store
//! holds the change (then the API answers); an error means the store holds nothing of
//! it, and the plane keeps its model unchanged.
//!
//! A store whose commit is a network round trip (etcd) splits it, so that the control
//! thread never waits on the network: `begin` plans the write and hands back a `Trip`
//! that another thread runs (control::committer), and `finish` takes the trip's outcome
//! on the control thread. The state file writes in `begin` (an fsync, not a network).

use super::model::LbState;
use super::state::StateFile;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store cannot be reached (etcd down, no quorum): nothing was written.
    Unavailable(String),
    /// Someone else changed a load balancer this change touches since this node last
    /// saw it: reload and apply the change again.
    Conflict,
    /// Anything else (a disk error, a record that does not decode).
    Failed(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) | StoreError::Failed(why) => f.write_str(why),
            StoreError::Conflict => f.write_str("changed concurrently by another node"),
        }
    }
}

/// A change another node made, for this node's model.
#[derive(Debug)]
pub enum Change {
    Put(Box<LbState>),
    Delete(String),
}

/// What the cluster watch thread reports (crate::cluster::follow); the state file has
/// no followers, so it never sees one.
pub use crate::cluster::follow::Remote;

/// What a planned write changes, for the store to remember once it is done.
#[derive(Debug, Default)]
pub struct Written {
    /// Load balancer name and stored record, for each one written.
    pub puts: Vec<(String, String)>,
    pub deletes: Vec<String>,
}

/// A write's round trip: `run` it anywhere, then hand what it returned to `finish`.
pub struct Trip {
    pub written: Written,
    pub run: Box<dyn FnOnce() -> TripOutcome + Send>,
}

/// The revision the store committed at, or why it did not.
pub type TripOutcome = Result<i64, crate::cluster::etcd::EtcdError>;

pub trait Store: Send {
    /// Every stored load balancer: at start, and again after a conflict.
    fn load(&mut self) -> Result<Vec<LbState>, StoreError>;
    /// Starts making the store hold `lbs`, the whole model after one change: None when
    /// it holds them already (written here, or nothing to write), else the round trip.
    fn begin(&mut self, lbs: &[LbState]) -> Result<Option<Trip>, StoreError>;
    /// The outcome of `begin`'s trip: Ok once the store holds the change.
    fn finish(&mut self, written: Written, outcome: TripOutcome) -> Result<(), StoreError> {
        let _ = written;
        outcome
            .map(drop)
            .map_err(|e| StoreError::Failed(e.to_string()))
    }
    /// `begin`, its trip run here, and `finish`: for callers that may wait (start).
    fn commit(&mut self, lbs: &[LbState]) -> Result<(), StoreError> {
        match self.begin(lbs)? {
            None => Ok(()),
            Some(trip) => {
                let outcome = (trip.run)();
                self.finish(trip.written, outcome)
            }
        }
    }
    /// Turns what the watch reported into changes this node does not have yet (its own
    /// writes coming back are left out, so applying is idempotent).
    fn follow(&mut self, remote: Remote) -> Vec<Change> {
        let _ = remote;
        Vec::new()
    }
    /// This node could not apply the stored version of `name` and keeps `ours` (None:
    /// it has none): take the next version that comes, and never write this node's
    /// copy over the stored one.
    fn forget(&mut self, name: &str, ours: Option<&LbState>) {
        let _ = (name, ours);
    }
    /// Some(why) while the store is known to be unreachable: reads then answer from
    /// what this node last had, and say so.
    fn stale(&self) -> Option<String> {
        None
    }
    /// Since when (wall clock) and why the store is known unreachable: the status page.
    fn outage(&self) -> Option<(std::time::SystemTime, String)> {
        None
    }
    /// Whether `begin` hands back round trips (the committer thread is then started).
    fn round_trips(&self) -> bool {
        false
    }
    /// For logs and errors: where the model is kept.
    fn describe(&self) -> String;
}

impl Store for StateFile {
    fn load(&mut self) -> Result<Vec<LbState>, StoreError> {
        StateFile::load(self).map_err(StoreError::Failed)
    }

    fn begin(&mut self, lbs: &[LbState]) -> Result<Option<Trip>, StoreError> {
        self.save(lbs).map_err(StoreError::Failed).map(|()| None)
    }

    fn describe(&self) -> String {
        format!("state file {}", self.path().display())
    }
}
