//! Desync mitigation (spec §10): every request head is classified by AWS's own
//! classifier, `http_desync_guardian` (the library ELB's modes are defined by), and the
//! load balancer's mode turns the class into an action.
//!
//! The classifier reads the head as httparse parsed it (no second parse), plus one thing
//! httparse hides: a line ended by a bare LF, which the library's raw parser reports as
//! `NonCrLfLineTermination`. A head httparse refuses never gets here: clb cannot frame
//! it, so it is answered 400 in every mode (README, "Desync mitigation").

use http_desync_guardian::request_analyzer::{HttpHeader, HttpRequestData};
use http_desync_guardian::HeaderSafetyTier;
pub use http_desync_guardian::{ClassificationReason as Reason, RequestSafetyTier as Tier};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `--desync-mode` and the `elb.http.desyncmitigationmode` attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    Monitor,
    #[default]
    Defensive,
    Strictest,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "monitor" => Some(Mode::Monitor),
            "defensive" => Some(Mode::Defensive),
            "strictest" => Some(Mode::Strictest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Monitor => "monitor",
            Mode::Defensive => "defensive",
            Mode::Strictest => "strictest",
        }
    }
}

/// What happens to a classified request (spec §10.1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Forwarded; after the response neither the client nor the instance connection is reused.
    ForwardThenClose,
    /// 400, and the client connection closed.
    Block,
}

pub fn action(mode: Mode, tier: Tier) -> Action {
    match (mode, tier) {
        (_, Tier::Compliant) | (Mode::Monitor, _) | (Mode::Defensive, Tier::Acceptable) => {
            Action::Forward
        }
        (Mode::Defensive, Tier::Ambiguous) => Action::ForwardThenClose,
        (Mode::Defensive, Tier::Severe) | (Mode::Strictest, _) => Action::Block,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub tier: Tier,
    pub reason: Reason,
}

impl Verdict {
    pub const COMPLIANT: Verdict = Verdict {
        tier: Tier::Compliant,
        reason: Reason::Compliant,
    };
}

/// A parsed head, as the classifier needs it.
pub struct Head<'a> {
    pub method: &'a [u8],
    pub uri: &'a [u8],
    pub version: &'a [u8],
    pub headers: &'a [httparse::Header<'a>],
    /// Some line of the head ends with a bare LF.
    pub bare_lf: bool,
}

/// Classifies `head`. `remove[i]` is set for every header the classifier marks Bad
/// ("MUST be removed before sending to backends", e.g. Content-Length beside
/// Transfer-Encoding); the message, for non-compliant requests, has values obfuscated.
pub fn classify(head: &Head<'_>, remove: &mut [bool]) -> (Verdict, Option<String>) {
    // Filled in place: collecting first and moving the result in copied the library's
    // whole inline header array (about a kilobyte) on every request.
    let mut request = HttpRequestData {
        method: head.method,
        version: head.version,
        uri: head.uri,
        headers: Default::default(),
    };
    request.headers.extend(
        head.headers
            .iter()
            .map(|h| HttpHeader::new(h.name.as_bytes(), h.value)),
    );
    let result = request.analyze_parsed_request();
    for (flag, header) in remove.iter_mut().zip(request.headers.iter()) {
        *flag = header.get_tier() == HeaderSafetyTier::Bad;
    }
    let mut verdict = Verdict {
        tier: result.tier,
        reason: result.reason,
    };
    // The library's raw parser ranks a bare LF line end Acceptable; the strictly higher
    // tier wins, as in the library.
    if head.bare_lf && verdict.tier < Tier::Acceptable {
        verdict = Verdict {
            tier: Tier::Acceptable,
            reason: Reason::NonCrLfLineTermination,
        };
    }
    (verdict, result.message)
}

/// Classifies a head httparse refused, with the library's own parser, for the counters
/// and the log only: clb answers 400 to it in every mode.
pub fn classify_unparsable(input: &[u8]) -> (Verdict, Option<String>) {
    let result = HttpRequestData::analyze_raw_request(input);
    let verdict = Verdict {
        tier: result.tier,
        reason: result.reason,
    };
    (verdict, result.message)
}

/// One debug line per non-compliant request (values obfuscated by the library), at most
/// `LOG_PER_SECOND` a second for the whole process, like the library's own logger.
pub fn log_non_compliant(client: IpAddr, verdict: Verdict, action: Action, message: &str) {
    if !log::log_enabled!(log::Level::Debug) || !admit_log_line() {
        return;
    }
    let done = match action {
        Action::Forward => "forwarded",
        Action::ForwardThenClose => "forwarded, then both connections closed",
        Action::Block => "blocked with 400",
    };
    log::debug!(
        "client {client}: {:?} request ({:?}), {done}: {message}",
        verdict.tier,
        verdict.reason
    );
}

const LOG_PER_SECOND: u64 = 100;
/// The current second (high bits) and the lines logged in it (low 20 bits).
static LOG_WINDOW: AtomicU64 = AtomicU64::new(0);

fn admit_log_line() -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let packed = LOG_WINDOW.load(Ordering::Relaxed);
    let (second, count) = (packed >> 20, packed & 0xF_FFFF);
    let next = if second == now {
        if count >= LOG_PER_SECOND {
            return false;
        }
        packed + 1
    } else {
        (now << 20) | 1
    };
    // A lost race drops one debug line, nothing else.
    LOG_WINDOW
        .compare_exchange(packed, next, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
}

/// Whether any line of `head` (through its blank line) ends with LF alone. Eight bytes
/// at a time (a byte-by-byte scan cost ~400 instructions per typical head): a bare LF is
/// an LF byte whose previous byte is not CR.
pub fn has_bare_lf(head: &[u8]) -> bool {
    let mut cr_before = 0u64; // high bit of byte 0: the byte before this word was CR
    let mut words = head.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        let lf = bytes_equal(w, b'\n');
        let cr = bytes_equal(w, b'\r');
        if lf & !((cr << 8) | cr_before) != 0 {
            return true;
        }
        cr_before = cr >> 56;
    }
    let mut prev_cr = cr_before != 0;
    for &b in words.remainder() {
        if b == b'\n' && !prev_cr {
            return true;
        }
        prev_cr = b == b'\r';
    }
    false
}

/// The high bit of every byte of `w` that equals `c`, exactly (no carries between bytes).
fn bytes_equal(w: u64, c: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = w ^ (u64::from(c) * 0x0101_0101_0101_0101);
    !(((x & LOW7) + LOW7) | x) & !LOW7
}

pub const TIERS: usize = 4;
pub const REASONS: usize = Reason::MissingUri as usize + 1;

/// Every reason, in the library's order (the length makes the compiler check the list).
pub const ALL_REASONS: [Reason; REASONS] = [
    Reason::Compliant,
    Reason::EmptyHeader,
    Reason::SuspiciousHeader,
    Reason::NonCompliantHeader,
    Reason::BadHeader,
    Reason::AmbiguousUri,
    Reason::SpaceInUri,
    Reason::BadUri,
    Reason::NonCompliantVersion,
    Reason::BadVersion,
    Reason::GetHeadZeroContentLength,
    Reason::UndefinedContentLengthSemantics,
    Reason::MultipleContentLength,
    Reason::DuplicateContentLength,
    Reason::BadContentLength,
    Reason::UndefinedTransferEncodingSemantics,
    Reason::MultipleTransferEncodingChunked,
    Reason::BadTransferEncoding,
    Reason::BothTeClPresent,
    Reason::BadMethod,
    Reason::NonCrLfLineTermination,
    Reason::MultilineHeader,
    Reason::PartialHeaderLine,
    Reason::MissingLastEmptyLine,
    Reason::MissingHeaderColon,
    Reason::MissingUri,
];

/// Requests counted by tier and reason (spec §10.1.2's metric, and issue 9's). Each
/// worker has its own; a scrape sums them.
pub struct Counts {
    counts: [[AtomicU64; REASONS]; TIERS],
}

impl Default for Counts {
    fn default() -> Counts {
        Counts {
            counts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl Counts {
    pub fn record(&self, verdict: Verdict) {
        if let Some(count) = self
            .counts
            .get(verdict.tier as usize)
            .and_then(|row| row.get(verdict.reason as usize))
        {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, tier: Tier, reason: Reason) -> u64 {
        self.counts
            .get(tier as usize)
            .and_then(|row| row.get(reason as usize))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_text(text: &str) -> (Verdict, Vec<bool>) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(text.as_bytes()).unwrap();
        let version = if req.version == Some(0) {
            &b"HTTP/1.0"[..]
        } else {
            b"HTTP/1.1"
        };
        let head = Head {
            method: req.method.unwrap().as_bytes(),
            uri: req.path.unwrap().as_bytes(),
            version,
            headers: req.headers,
            bare_lf: has_bare_lf(text.as_bytes()),
        };
        let mut remove = vec![false; head.headers.len()];
        let (verdict, _) = classify(&head, &mut remove);
        (verdict, remove)
    }

    #[test]
    fn bare_lf_is_found_wherever_it_is() {
        fn slow(head: &[u8]) -> bool {
            let mut prev = 0u8;
            for &b in head {
                if b == b'\n' && prev != b'\r' {
                    return true;
                }
                prev = b;
            }
            false
        }
        // Every head up to 20 bytes of CR, LF and 'a' around word boundaries, plus
        // pseudo-random longer ones.
        let alphabet = [b'\r', b'\n', b'a'];
        for len in 0..=11usize {
            for mut n in 0..3usize.pow(len as u32) {
                let mut head = vec![b'x'; 9 + len];
                for byte in head[9..].iter_mut() {
                    *byte = alphabet[n % 3];
                    n /= 3;
                }
                for start in 0..9 {
                    let h = &head[start..];
                    assert_eq!(has_bare_lf(h), slow(h), "{h:?}");
                }
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut head = Vec::new();
            for _ in 0..(seed % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                head.push([b'\r', b'\n', b'a', 0x8a, 0x8d][(seed % 5) as usize]);
            }
            assert_eq!(has_bare_lf(&head), slow(&head), "{head:?}");
        }
    }

    #[test]
    fn tiers_and_reasons_follow_the_library() {
        let (v, _) = classify_text("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(v, Verdict::COMPLIANT);
        let (v, _) = classify_text("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            (v.tier, v.reason),
            (Tier::Acceptable, Reason::GetHeadZeroContentLength)
        );
        let (v, remove) = classify_text(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(
            (v.tier, v.reason),
            (Tier::Ambiguous, Reason::BothTeClPresent)
        );
        assert_eq!(remove, [false, true, false]);
        let (v, _) = classify_text(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        );
        assert_eq!(
            (v.tier, v.reason),
            (Tier::Severe, Reason::MultipleTransferEncodingChunked)
        );
        let (v, _) = classify_text("GET / HTTP/1.1\nHost: a\n\n");
        assert_eq!(
            (v.tier, v.reason),
            (Tier::Acceptable, Reason::NonCrLfLineTermination)
        );
    }

    #[test]
    fn modes_act_as_the_matrix_says() {
        use Action::*;
        let tiers = [
            Tier::Compliant,
            Tier::Acceptable,
            Tier::Ambiguous,
            Tier::Severe,
        ];
        let want = [
            (Mode::Monitor, [Forward, Forward, Forward, Forward]),
            (Mode::Defensive, [Forward, Forward, ForwardThenClose, Block]),
            (Mode::Strictest, [Forward, Block, Block, Block]),
        ];
        for (mode, actions) in want {
            for (tier, expected) in tiers.iter().zip(actions) {
                assert_eq!(action(mode, *tier), expected, "{mode:?} {tier:?}");
            }
        }
    }

    #[test]
    fn counts_by_tier_and_reason() {
        let counts = Counts::default();
        let v = Verdict {
            tier: Tier::Severe,
            reason: Reason::BadUri,
        };
        counts.record(v);
        counts.record(v);
        assert_eq!(counts.get(Tier::Severe, Reason::BadUri), 2);
        assert_eq!(counts.get(Tier::Compliant, Reason::Compliant), 0);
    }
}
