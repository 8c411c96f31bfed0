//! The model in etcd: one key per load balancer, `<prefix>lb/<name>`, whose value is
//! that load balancer's record in the state file's text format (state.rs encodes and
//! decodes both stores), plus `<prefix>sticky-key`.
//!
//! Every write is one transaction guarded by the mod revision of each key it changes,
//! as this node last saw it (0: absent). A guard that fails means another node wrote
//! first: `Conflict`, and the control plane reloads and applies the API action again.
//! The listen address is left out of the record: it is this node's (its own pool).
//!
//! `known` is what this node believes etcd holds (revision and record per load
//! balancer): a watch event at or below a known revision is this node's own write
//! coming back, or one it already has, and is skipped.

use super::etcd::{Etcd, EtcdError, Kv, WatchKind};
use super::follow::Remote;
use crate::control::model::LbState;
use crate::control::state;
use crate::control::store::{Change, Store, StoreError, Trip, TripOutcome, Written};
use std::collections::HashMap;
use std::sync::Arc;

struct Known {
    mod_revision: i64,
    record: String,
}

pub struct EtcdStore {
    /// Shared with the trips that run this store's writes off the control thread.
    etcd: Arc<Etcd>,
    prefix: String,
    endpoints: String,
    known: HashMap<String, Known>,
    /// The revision of the last full load: the watch starts after it.
    loaded_at: i64,
    /// Since when, and why, etcd has not answered (the watch or a write said so).
    unreachable: Option<(std::time::Instant, String)>,
}

impl EtcdStore {
    pub fn new(etcd: Etcd, prefix: &str, endpoints: &[String]) -> EtcdStore {
        EtcdStore {
            etcd: Arc::new(etcd),
            prefix: prefix.to_string(),
            endpoints: endpoints.join(","),
            known: HashMap::new(),
            loaded_at: 0,
            unreachable: None,
        }
    }

    /// Where the load balancers' keys live: what the watch thread follows.
    pub fn lb_prefix(&self) -> Vec<u8> {
        format!("{}lb/", self.prefix).into_bytes()
    }

    pub fn loaded_at(&self) -> i64 {
        self.loaded_at
    }

    fn key(&self, name: &str) -> Vec<u8> {
        format!("{}lb/{name}", self.prefix).into_bytes()
    }

    fn name_of(&self, key: &[u8]) -> Option<String> {
        let name = key.strip_prefix(self.lb_prefix().as_slice())?;
        String::from_utf8(name.to_vec()).ok()
    }

    fn error(&mut self, e: EtcdError) -> StoreError {
        if let EtcdError::Unreachable(why) = &e {
            self.unreachable
                .get_or_insert_with(|| (std::time::Instant::now(), why.clone()));
        }
        match e {
            EtcdError::Conflict => StoreError::Conflict,
            EtcdError::Unreachable(why) => {
                StoreError::Unavailable(format!("etcd ({}) unreachable: {why}", self.endpoints))
            }
            other => StoreError::Failed(other.to_string()),
        }
    }

    /// A put this node does not have yet, decoded; None for one to skip.
    fn fresh_put(&mut self, kv: &Kv) -> Option<LbState> {
        let name = self.name_of(&kv.key)?;
        if self
            .known
            .get(&name)
            .is_some_and(|k| k.mod_revision >= kv.mod_revision)
        {
            return None;
        }
        match decode(&name, &kv.value) {
            Ok((lb, record)) => {
                self.known.insert(
                    name,
                    Known {
                        mod_revision: kv.mod_revision,
                        record,
                    },
                );
                Some(lb)
            }
            Err(e) => {
                log::error!(
                    "cluster: {}: {e}; this node keeps its copy",
                    String::from_utf8_lossy(&kv.key)
                );
                None
            }
        }
    }
}

/// The stored form of one load balancer: the state file's record without the address.
pub fn record(lb: &LbState) -> String {
    let mut lb = lb.clone();
    lb.address = None;
    state::encode(std::slice::from_ref(&lb))
}

fn decode(name: &str, value: &[u8]) -> Result<(LbState, String), String> {
    let text = std::str::from_utf8(value).map_err(|_| "not UTF-8".to_string())?;
    let mut lbs = state::decode(text)?;
    match (lbs.pop(), lbs.is_empty()) {
        (Some(lb), true) if lb.name == name => {
            let record = record(&lb);
            Ok((lb, record))
        }
        _ => Err(format!("expected one record for load balancer {name}")),
    }
}

impl Store for EtcdStore {
    fn load(&mut self) -> Result<Vec<LbState>, StoreError> {
        let (kvs, revision) = self
            .etcd
            .range_prefix(&self.lb_prefix())
            .map_err(|e| self.error(e))?;
        self.unreachable = None;
        self.known.clear();
        let mut lbs = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            let Some(name) = self.name_of(&kv.key) else {
                continue;
            };
            let (lb, record) = decode(&name, &kv.value).map_err(|e| {
                StoreError::Failed(format!(
                    "etcd key {}: {e}",
                    String::from_utf8_lossy(&kv.key)
                ))
            })?;
            self.known.insert(
                name,
                Known {
                    mod_revision: kv.mod_revision,
                    record,
                },
            );
            lbs.push(lb);
        }
        self.loaded_at = revision;
        Ok(lbs)
    }

    fn begin(&mut self, lbs: &[LbState]) -> Result<Option<Trip>, StoreError> {
        let (mut guards, mut puts, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
        let mut written = Written::default();
        for lb in lbs {
            let rec = record(lb);
            let seen = self.known.get(&lb.name);
            if seen.is_some_and(|k| k.record == rec) {
                continue;
            }
            guards.push((self.key(&lb.name), seen.map_or(0, |k| k.mod_revision)));
            puts.push((self.key(&lb.name), rec.clone().into_bytes()));
            written.puts.push((lb.name.clone(), rec));
        }
        // An empty record: forgotten, and this node never had it; not ours to delete.
        written.deletes = self
            .known
            .iter()
            .filter(|(name, k)| !k.record.is_empty() && !lbs.iter().any(|lb| &lb.name == *name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &written.deletes {
            guards.push((
                self.key(name),
                self.known.get(name).map_or(0, |k| k.mod_revision),
            ));
            deletes.push(self.key(name));
        }
        if guards.is_empty() {
            return Ok(None);
        }
        let etcd = self.etcd.clone();
        Ok(Some(Trip {
            written,
            run: Box::new(move || etcd.txn(&guards, &puts, &deletes)),
        }))
    }

    fn finish(&mut self, written: Written, outcome: TripOutcome) -> Result<(), StoreError> {
        let revision = outcome.map_err(|e| self.error(e))?;
        self.unreachable = None;
        for (name, record) in written.puts {
            self.known.insert(
                name,
                Known {
                    mod_revision: revision,
                    record,
                },
            );
        }
        for name in written.deletes {
            self.known.remove(&name);
        }
        Ok(())
    }

    fn follow(&mut self, remote: Remote) -> Vec<Change> {
        let mut changes = Vec::new();
        if let Remote::Unreachable(why) = &remote {
            self.unreachable
                .get_or_insert_with(|| (std::time::Instant::now(), why.clone()));
        } else {
            self.unreachable = None;
        }
        match remote {
            Remote::Unreachable(_) => {}
            Remote::Events(events) => {
                for event in events {
                    match event.kind {
                        WatchKind::Put => changes.extend(
                            self.fresh_put(&event.kv)
                                .map(|lb| Change::Put(Box::new(lb))),
                        ),
                        WatchKind::Delete => {
                            let Some(name) = self.name_of(&event.kv.key) else {
                                continue;
                            };
                            if self
                                .known
                                .get(&name)
                                .is_some_and(|k| k.mod_revision < event.kv.mod_revision)
                            {
                                self.known.remove(&name);
                                changes.push(Change::Delete(name));
                            }
                        }
                    }
                }
            }
            Remote::Resync { kvs, revision } => {
                let present: Vec<String> =
                    kvs.iter().filter_map(|kv| self.name_of(&kv.key)).collect();
                for kv in &kvs {
                    changes.extend(self.fresh_put(kv).map(|lb| Change::Put(Box::new(lb))));
                }
                let gone: Vec<String> = self
                    .known
                    .keys()
                    .filter(|n| !present.contains(n))
                    .cloned()
                    .collect();
                for name in gone {
                    self.known.remove(&name);
                    changes.push(Change::Delete(name));
                }
                self.loaded_at = revision;
            }
        }
        changes
    }

    fn stale(&self) -> Option<String> {
        self.unreachable.as_ref().map(|(since, why)| {
            format!(
                "etcd unreachable for {} s ({why}); this answer is this node's last state",
                since.elapsed().as_secs()
            )
        })
    }

    fn outage(&self) -> Option<(std::time::SystemTime, String)> {
        self.unreachable.as_ref().map(|(since, why)| {
            let wall = std::time::SystemTime::now()
                .checked_sub(since.elapsed())
                .unwrap_or(std::time::UNIX_EPOCH);
            (wall, why.clone())
        })
    }

    fn forget(&mut self, name: &str, ours: Option<&LbState>) {
        // A revision no key has: a change of ours to it conflicts (and reloads), any
        // version the watch brings is newer. Our unchanged copy (or our having none,
        // an empty record) is not written, so writes to other load balancers go on.
        let record = ours.map(record).unwrap_or_default();
        self.known.insert(
            name.to_string(),
            Known {
                mod_revision: -1,
                record,
            },
        );
    }

    fn round_trips(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("etcd {} under {}", self.endpoints, self.prefix)
    }
}

/// The key `AWSELB` cookies are signed with, shared by every node: `<prefix>sticky-key`
/// (64 hex digits), created by the first node with a "create if absent" transaction.
pub fn shared_sticky_key(etcd: &Etcd, prefix: &str, fresh: [u8; 32]) -> Result<[u8; 32], String> {
    let key = format!("{prefix}sticky-key").into_bytes();
    let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    match etcd.txn(&[(key.clone(), 0)], &[(key.clone(), hex.into_bytes())], &[]) {
        Ok(_) => return Ok(fresh),
        Err(EtcdError::Conflict) => {}
        Err(e) => return Err(format!("sticky-session key in etcd: {e}")),
    }
    let (kv, _) = etcd
        .get(&key)
        .map_err(|e| format!("sticky-session key in etcd: {e}"))?;
    let text = kv.map(|kv| kv.value).unwrap_or_default();
    let bad = || format!("etcd key {prefix}sticky-key: not a 64-digit hex key");
    let text = std::str::from_utf8(&text).map_err(|_| bad())?.trim();
    if text.len() != 64 {
        return Err(bad());
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(bytes)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
