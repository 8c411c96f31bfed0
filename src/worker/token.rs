//! Typed mio tokens: what a readiness event is for, and which incarnation of a slot.
//!
//! Layout of the 64-bit token: kind in the top 4 bits, a 28-bit generation, then the
//! 32-bit slab key (or listener index). A slab slot reused by a new connection gets a
//! new generation, so an event or timer still queued for the old one is recognised as
//! stale and dropped, never applied to the wrong connection.

use mio::Token;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Waker,
    Listener,
    Client,
    Backend,
    /// A health probe: its socket's events, and its schedule and timeout.
    Probe,
}

const KIND_SHIFT: u32 = 60;
const GEN_SHIFT: u32 = 32;
const GEN_MASK: u64 = (1 << 28) - 1;
const KEY_MASK: u64 = (1 << 32) - 1;

pub const WAKER: Token = Token(0);

pub fn encode(kind: Kind, generation: u32, key: usize) -> Token {
    let kind = match kind {
        Kind::Waker => 0u64,
        Kind::Listener => 1,
        Kind::Client => 2,
        Kind::Backend => 3,
        Kind::Probe => 4,
    };
    Token(
        ((kind << KIND_SHIFT)
            | ((generation as u64 & GEN_MASK) << GEN_SHIFT)
            | (key as u64 & KEY_MASK)) as usize,
    )
}

pub fn decode(token: Token) -> (Kind, u32, usize) {
    let raw = token.0 as u64;
    let kind = match raw >> KIND_SHIFT {
        1 => Kind::Listener,
        2 => Kind::Client,
        3 => Kind::Backend,
        4 => Kind::Probe,
        _ => Kind::Waker,
    };
    (
        kind,
        ((raw >> GEN_SHIFT) & GEN_MASK) as u32,
        (raw & KEY_MASK) as usize,
    )
}

/// Hands out generations; 28 bits wrap after 268 million connections, long after any
/// stale event for a slot could still be queued.
#[derive(Default)]
pub struct Generations(u32);

impl Generations {
    pub fn issue(&mut self) -> u32 {
        self.0 = (self.0 + 1) & GEN_MASK as u32;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for kind in [Kind::Listener, Kind::Client, Kind::Backend, Kind::Probe] {
            let token = encode(kind, 12345, 678);
            assert_eq!(decode(token), (kind, 12345, 678));
        }
        assert_eq!(decode(WAKER).0, Kind::Waker);
    }
}
