//! The surge queue (spec §11): when every instance that could serve a request (HTTP) or
//! connection (TCP) is at `--max-backend-connections`, it waits here, first in first
//! out, instead of failing; when the queue is full it spills over (503, or the
//! connection closed) and `SpilloverCount` counts it. Each worker has its share of the
//! process-wide length (`--surge-queue`, default 1,024, ELB's per-node maximum).
//!
//! Entries are (client, generation): a client that left, timed out or was answered is
//! skipped when its turn comes. The queue is served once per loop turn, head first; the
//! head waiting for room holds the rest back, as a FIFO should.

use super::conn::Phase;
use super::session::Step;
use super::Worker;
use crate::http::canned::Canned;
use crate::stats::Counter;
use std::sync::atomic::Ordering;

pub(super) struct Waiting {
    key: usize,
    generation: u32,
    /// The load balancer's metric slot (SurgeQueueLength is per load balancer).
    lb: usize,
}

impl Worker {
    /// The metric slot of the load balancer a client connected to.
    fn client_lb_slot(&self, key: usize) -> usize {
        self.clients
            .get(key)
            .and_then(|c| self.topo.listeners.get(c.listener))
            .and_then(|l| self.topo.lbs.get(l.lb))
            .map_or(usize::MAX, |lb| lb.stats_slot)
    }

    /// Queues client `key`; false when the queue is full (the caller spills over, and
    /// it is counted here).
    pub(super) fn enqueue_surge(&mut self, key: usize) -> bool {
        let lb = self.client_lb_slot(key);
        let Some(generation) = self.clients.get(key).map(|c| c.generation) else {
            return false;
        };
        if self.surge.len() >= self.settings.surge_queue {
            self.settings.stats.add(lb, 0, Counter::SpilloverCount, 1);
            return false;
        }
        self.surge.push_back(Waiting {
            key,
            generation,
            lb,
        });
        if let Some(gauge) = self.settings.stats.surge.get(lb) {
            gauge.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Gives queued requests and connections the room that freed up, head first.
    pub(super) fn serve_surge_queue(&mut self) {
        while let Some(head) = self.surge.front() {
            let (key, generation, lb) = (head.key, head.generation, head.lb);
            let served = self.try_dequeue(key, generation);
            if served == Dequeue::Wait {
                return;
            }
            self.surge.pop_front();
            if let Some(gauge) = self.settings.stats.surge.get(lb) {
                gauge.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn try_dequeue(&mut self, key: usize, generation: u32) -> Dequeue {
        let phase = match self.clients.get(key) {
            Some(c) if c.generation == generation => &c.phase,
            _ => return Dequeue::Gone,
        };
        match *phase {
            Phase::Exchange(xk) if self.exchanges.get(xk).is_some_and(|ex| ex.queued) => {
                let Some(mut ex) = self.take_exchange(key) else {
                    return Dequeue::Gone;
                };
                if self.attach_upstream(key, &mut ex, false) {
                    ex.queued = false;
                    self.put_exchange(key, ex);
                    self.drive(key);
                    Dequeue::Served
                } else if self.balancer.saturated() {
                    self.put_exchange(key, ex);
                    Dequeue::Wait
                } else {
                    // No instance left at all since it queued: ELB's 503.
                    ex.queued = false;
                    match self.fail_exchange(key, ex, Canned::ServiceUnavailable) {
                        Step::Close => self.close_client(key),
                        _ => self.drive(key),
                    }
                    Dequeue::Served
                }
            }
            Phase::Tunnel(tk) if self.tunnels.get(tk).is_some_and(|t| t.queued) => {
                match self.connect_queued_tunnel(key, tk) {
                    Some(true) => {
                        self.drive(key);
                        Dequeue::Served
                    }
                    Some(false) => Dequeue::Wait,
                    None => {
                        self.close_client(key);
                        Dequeue::Served
                    }
                }
            }
            _ => Dequeue::Gone,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dequeue {
    Served,
    /// The head still finds no room: the queue waits.
    Wait,
    /// The client is no longer waiting.
    Gone,
}
