//! Starting clb: the topology built from the configuration, every listening socket
//! bound, and one worker thread per event loop.
//!
//! Everything that can fail at start-up (a name that does not resolve, a port in use)
//! fails here, before any thread starts, with an error that names what failed.

use crate::backend::health::{InFlight, MAX_SLOTS};
use crate::config::{Config, Topology, TopologyError};
use crate::worker::{self, ListenError, Settings, Worker, WorkerHandle};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug)]
pub enum StartError {
    Topology(TopologyError),
    Listen(ListenError),
    Worker(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Topology(e) => e.fmt(f),
            StartError::Listen(e) => e.fmt(f),
            StartError::Worker(e) => write!(f, "cannot start a worker: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running clb: its worker threads.
pub struct Running {
    pub topology: Arc<Topology>,
    workers: Vec<JoinHandle<io::Result<()>>>,
    /// How to send each worker a new topology.
    pub handles: Vec<WorkerHandle>,
    /// Each worker's in-flight requests per health-board slot.
    pub in_flight: Vec<Arc<InFlight>>,
}

pub fn start(config: &Config) -> Result<Running, StartError> {
    let topology = Arc::new(
        Topology::from_load_balancers(std::slice::from_ref(&config.load_balancer))
            .map_err(StartError::Topology)?,
    );
    let runtime = &config.runtime;
    let sockets = worker::bind_listeners(&topology, runtime.bind, runtime.workers)
        .map_err(StartError::Listen)?;
    let mut workers = Vec::with_capacity(sockets.len());
    let mut handles = Vec::with_capacity(sockets.len());
    let mut in_flight = Vec::with_capacity(sockets.len());
    for (id, listening) in sockets.into_iter().enumerate() {
        let counts = Arc::new(InFlight::new(MAX_SLOTS));
        let settings = Settings {
            max_connections: runtime.max_connections,
            workers: runtime.workers,
            health_unit: worker::health_unit_from_env(),
        };
        let (worker, handle) =
            Worker::new(id, topology.clone(), listening, settings, counts.clone())
                .map_err(StartError::Worker)?;
        handles.push(handle);
        in_flight.push(counts);
        let handle = std::thread::Builder::new()
            .name(format!("clb-worker-{id}"))
            .spawn(move || worker.run())
            .map_err(StartError::Worker)?;
        workers.push(handle);
    }
    Ok(Running {
        topology,
        workers,
        handles,
        in_flight,
    })
}

impl Running {
    /// Waits for the workers; they stop only if their poll fails.
    pub fn wait(self) -> io::Result<()> {
        for handle in self.workers {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => return Err(io::Error::other("a worker thread panicked")),
            }
        }
        Ok(())
    }
}
