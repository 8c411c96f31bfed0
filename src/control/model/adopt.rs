//! Load balancers that arrive from the store (another node's change, a resync after
//! etcd came back): they take the place of this node's copy, keeping what belongs to
//! this node only: each still-registered instance's health slot (so its health state
//! and in-flight count carry on rather than restarting), connection draining of the
//! instances the change deregistered, and the listen address.

use super::*;

impl Model {
    /// Puts `lb` in the place of the load balancer of the same name, or adds it. Called
    /// on a copy of the model: an error leaves the copy half-changed, to be dropped.
    pub fn adopt(&mut self, mut lb: LbState, now: Instant) -> Result<(), ApiError> {
        let Some(at) = self.lbs.iter().position(|l| l.name == lb.name) else {
            return self.insert(lb);
        };
        let old = self.lbs.remove(at);
        // The stored record has no address (addresses are per node): keep ours.
        if lb.address.is_none() {
            lb.address = old.address;
        }
        if let Err(e) = self.place(&mut lb) {
            self.lbs.insert(at, old);
            return Err(e);
        }
        let mut kept = vec![false; old.registered.len()];
        for r in &mut lb.registered {
            match old
                .registered
                .iter()
                .position(|o| o.instance.id == r.instance.id)
            {
                Some(i) => {
                    (r.slot, r.serial) = (old.registered[i].slot, old.registered[i].serial);
                    kept[i] = true;
                }
                None => (r.slot, r.serial) = self.allocate()?,
            }
        }
        let drain = Duration::from_secs(lb.attributes.draining_timeout.into());
        for (mut o, kept) in old.registered.into_iter().zip(kept) {
            if kept {
                continue;
            }
            // Deregistered elsewhere: drain here too, as the node that took the call does.
            if o.draining_until.is_none() && lb.attributes.draining {
                o.draining_until = Some(now + drain);
            }
            if o.draining_until.is_some() {
                lb.registered.push(o);
            } else {
                self.release(o.slot);
            }
        }
        self.lbs.insert(at, lb);
        Ok(())
    }
}
