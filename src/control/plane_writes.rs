//! A mutating action's way to the store without the control thread waiting on the
//! network: the action runs on a copy of the model, the copy is prepared (topology,
//! new listeners bound), and the store's write starts (`Store::begin`). A state file
//! writes there and then; an etcd transaction is a `Trip` the committer thread runs,
//! and the action's answer waits in `Pending` until `committed` hands over the outcome.
//! Meanwhile the control thread answers reads, the status page and metrics from the
//! model as it was, and holds the next write (server.rs) until this one is answered.
//!
//! A conflict (another node wrote the same load balancer first) reloads the store and
//! runs the action again on the fresh model, up to `CONFLICT_RETRIES` times. That
//! reload reads etcd on this thread: etcd has just answered.

use super::{actions, jitter, own_view, store_error, Plane, Prepared, CONFLICT_RETRIES};
use crate::control::error::ApiError;
use crate::control::model::Model;
use crate::control::query::Params;
use crate::control::store::{StoreError, TripOutcome, Written};
use std::time::Instant;

/// What `Plane::run` did with an action.
pub enum Ran {
    /// The answer (every read; a write the store holds already, or refused).
    Done(Result<String, ApiError>),
    /// A write waiting for the store: `Plane::committed` gives its answer.
    Pending,
}

/// The write waiting for its round trip, with what it takes to finish or retry it.
pub struct Pending {
    ticket: u64,
    written: Written,
    next: Model,
    prepared: Prepared,
    answer: String,
    params: Params,
    request_id: String,
    conflicts: u32,
}

impl Plane {
    /// Whether a write is waiting for the store: the next one waits for it.
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// Runs the mutating action in `params` after `conflicts` conflicts.
    pub(super) fn write(
        &mut self,
        params: &Params,
        request_id: &str,
        now: Instant,
        conflicts: u32,
    ) -> Ran {
        let mut next = self.model.clone();
        let answer = match actions::run(&mut next, params, request_id, now, &own_view) {
            Ok(answer) => answer,
            Err(e) => return Ran::Done(Err(e)),
        };
        let prepared = match self.prepare(&mut next) {
            Ok(prepared) => prepared,
            Err(e) => return Ran::Done(Err(e)),
        };
        let trip = match self.store.as_mut().map(|s| s.begin(&next.lbs)) {
            None | Some(Ok(None)) => {
                self.installed(next, prepared, params);
                return Ran::Done(Ok(answer));
            }
            Some(Err(e)) => return Ran::Done(Err(store_error(e))),
            Some(Ok(Some(trip))) => trip,
        };
        let mut pending = Pending {
            ticket: 0,
            written: trip.written,
            next,
            prepared,
            answer,
            params: params.clone(),
            request_id: request_id.to_string(),
            conflicts,
        };
        let started = match self.committer.as_mut() {
            Some(committer) => committer.start(trip.run),
            None => Err(trip.run),
        };
        match started {
            Ok(ticket) => {
                pending.ticket = ticket;
                self.pending = Some(pending);
                Ran::Pending
            }
            // No committer thread (tests, or it is gone): the round trip runs here.
            Err(run) => {
                let outcome = run();
                self.conclude(pending, outcome)
            }
        }
    }

    /// The outcome of the pending write's round trip: its answer, or None while it goes
    /// on (a conflict retried) or when `ticket` is not the pending write's.
    pub fn committed(
        &mut self,
        ticket: u64,
        outcome: TripOutcome,
    ) -> Option<Result<String, ApiError>> {
        if self.pending.as_ref().is_none_or(|p| p.ticket != ticket) {
            log::warn!("control: the answer of store write {ticket} came for no write waiting");
            return None;
        }
        let pending = self.pending.take()?;
        match self.conclude(pending, outcome) {
            Ran::Done(answer) => Some(answer),
            Ran::Pending => None,
        }
    }

    /// The write's answer, or after a conflict the same action again on a fresh model.
    fn conclude(&mut self, pending: Pending, outcome: TripOutcome) -> Ran {
        let Pending {
            written,
            next,
            prepared,
            answer,
            params,
            request_id,
            conflicts,
            ..
        } = pending;
        let stored = match self.store.as_mut() {
            Some(store) => store.finish(written, outcome),
            None => Ok(()),
        };
        Ran::Done(match stored {
            Ok(()) => {
                self.installed(next, prepared, &params);
                Ok(answer)
            }
            Err(StoreError::Conflict) if conflicts < CONFLICT_RETRIES => {
                let action = params.action().unwrap_or("-");
                log::info!("API {action}: another node changed the same load balancer first; reloading and applying again");
                std::thread::sleep(jitter(conflicts + 1));
                return match self.reload() {
                    Ok(()) => self.write(&params, &request_id, Instant::now(), conflicts + 1),
                    Err(e) => Ran::Done(Err(e)),
                };
            }
            Err(StoreError::Conflict) => Err(ApiError::throttling(format!(
                "Rate exceeded: the load balancer was changed on another node {} times while this change was made; try again",
                conflicts + 1
            ))),
            Err(e) => Err(store_error(e)),
        })
    }

    fn installed(&mut self, next: Model, prepared: Prepared, params: &Params) {
        self.install(next, prepared);
        if params.action() == Some("SetLoadBalancerListenerSSLCertificate") {
            self.reload_tls();
        }
    }
}
