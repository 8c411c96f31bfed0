//! The health publisher thread: the one place this node's health view is written to
//! etcd (`<prefix>health/<node>/<lb>/<id>`, bound to the membership lease).
//!
//! The control thread sends it transitions and lease changes over a channel and never
//! waits; the thread keeps what the node's view *is* (`desired`) and what it wrote
//! under the current lease (`written`), and writes the difference: a burst of
//! transitions is coalesced (the last state of an instance wins), a failed write is
//! retried with a capped backoff while etcd is away (logged once per outage), and a new
//! lease (the node registered again after losing its old one, whose keys went with it)
//! makes it write the whole view again.

use super::etcd::Etcd;
use super::health::{encode, health_key};
use super::outage::Outage;
use crate::backend::health::Health;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the control thread tells the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// This node's view of an instance; None: no view (deregistered, load balancer
    /// deleted, or registered again and not probed yet): the key is removed.
    Set {
        lb: String,
        id: String,
        health: Option<Health>,
    },
    /// The membership lease now (0: none yet). Keys are written only under a lease.
    Lease(i64),
}

type Entry = (String, String);

/// Starts the thread; it ends when the control thread drops its sender.
pub fn spawn(
    etcd: Etcd,
    prefix: &str,
    node: &str,
    messages: Receiver<Publish>,
) -> std::io::Result<()> {
    let mut publisher = Publisher {
        etcd,
        prefix: prefix.to_string(),
        node: node.to_string(),
        desired: HashMap::new(),
        written: HashMap::new(),
        lease: 0,
    };
    std::thread::Builder::new()
        .name("clb-health-pub".into())
        .spawn(move || publisher.run(&messages))
        .map(drop)
}

struct Publisher {
    etcd: Etcd,
    prefix: String,
    node: String,
    desired: HashMap<Entry, Health>,
    written: HashMap<Entry, Health>,
    lease: i64,
}

impl Publisher {
    fn run(&mut self, messages: &Receiver<Publish>) {
        let mut outage = Outage::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            let first = if outage.is_on() {
                match messages.recv_timeout(outage.backoff()) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match messages.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return,
                }
            };
            // Everything queued meanwhile goes in the same pass.
            for message in first.into_iter().chain(messages.try_iter()) {
                self.take(message);
            }
            match self.sync() {
                Ok(writes) => {
                    if let Some(lasted) = outage.ended() {
                        log::info!(
                            "cluster: health view published again after {:.1} s ({writes} writes)",
                            lasted.as_secs_f64()
                        );
                    }
                }
                Err(e) => {
                    if outage.failed() {
                        log::warn!(
                            "cluster: cannot publish this node's health view, retrying: {e}"
                        );
                    }
                }
            }
        }
    }

    fn take(&mut self, message: Publish) {
        match message {
            Publish::Set { lb, id, health } => match health {
                Some(h) => {
                    self.desired.insert((lb, id), h);
                }
                None => {
                    self.desired.remove(&(lb, id));
                }
            },
            Publish::Lease(lease) if lease != self.lease => {
                // The old lease's keys went with it (or go when it expires).
                self.lease = lease;
                self.written.clear();
            }
            Publish::Lease(_) => {}
        }
    }

    /// Writes what differs; the number of writes, or the first error (what is left is
    /// written at the next pass).
    fn sync(&mut self) -> Result<usize, super::etcd::EtcdError> {
        if self.lease == 0 {
            return Ok(0);
        }
        let mut writes = 0;
        let changed: Vec<(Entry, Health)> = self
            .desired
            .iter()
            .filter(|(e, h)| self.written.get(*e) != Some(*h))
            .map(|(e, h)| (e.clone(), *h))
            .collect();
        for ((lb, id), health) in changed {
            let key = health_key(&self.prefix, &self.node, &lb, &id);
            self.etcd.put(&key, &encode(health), self.lease)?;
            self.written.insert((lb, id), health);
            writes += 1;
        }
        let gone: Vec<Entry> = self
            .written
            .keys()
            .filter(|e| !self.desired.contains_key(*e))
            .cloned()
            .collect();
        for (lb, id) in gone {
            self.etcd
                .delete(&health_key(&self.prefix, &self.node, &lb, &id))?;
            self.written.remove(&(lb, id));
            writes += 1;
        }
        Ok(writes)
    }
}
