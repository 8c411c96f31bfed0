//! How long a message body is, and walking it as bytes arrive (RFC 9112 §6.3).
//!
//! `Body` is decided once from the head (see `request.rs` and `response.rs`) and then
//! advanced over the buffered bytes: each call classifies a run as payload or framing,
//! so the caller can forward exactly the message's bytes and leave whatever follows (a
//! pipelined request) in the buffer.

use super::chunked::{ChunkError, ChunkedDecoder, Run};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// No body, or the body has been fully walked.
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Response delimited by the instance closing the connection.
    UntilClose,
}

impl Body {
    pub fn chunked() -> Body {
        Body::Chunked(ChunkedDecoder::new())
    }

    /// How many bytes at the front of `input` make up the rest of this body, framing
    /// included, as they are forwarded; `None` while the body does not end within
    /// `input` (a close-delimited body never does).
    pub fn forwarded_len(mut self, input: &[u8]) -> Result<Option<usize>, ChunkError> {
        let mut at = 0;
        loop {
            if self.is_done() {
                return Ok(Some(at));
            }
            if matches!(self, Body::UntilClose) {
                return Ok(None);
            }
            let run = self.next_run(&input[at..])?;
            if run.len == 0 {
                return Ok(None);
            }
            at += run.len;
        }
    }

    pub fn is_done(&self) -> bool {
        match self {
            Body::Done => true,
            Body::Chunked(d) => d.is_done(),
            Body::Length(_) | Body::UntilClose => false,
        }
    }

    /// Classifies the longest prefix of `input` that is all payload or all framing.
    pub fn next_run(&mut self, input: &[u8]) -> Result<Run, ChunkError> {
        match self {
            Body::Done => Ok(Run {
                len: 0,
                payload: true,
            }),
            Body::Length(left) => {
                let n = (input.len() as u64).min(*left) as usize;
                *left -= n as u64;
                if *left == 0 {
                    *self = Body::Done;
                }
                Ok(Run {
                    len: n,
                    payload: true,
                })
            }
            Body::Chunked(d) => d.next_run(input),
            Body::UntilClose => Ok(Run {
                len: input.len(),
                payload: true,
            }),
        }
    }
}

/// A header name a lax parser could take for `Transfer-Encoding` or `Content-Length`
/// although it is not one: the same letters and digits, with other bytes (`_` for `-`,
/// dots, spaces, controls) around or between them. Such a header never reaches an
/// instance (README, "Request framing"): nginx drops every name with `_` by default and
/// other servers read `_` as `-`, so forwarding it beside a body invites a desync.
#[inline]
pub fn looks_like_framing(name: &[u8]) -> bool {
    // The letters must spell "contentlength" (13) or "transferencoding" (16): a shorter
    // name cannot (most header names, on every request and response), and that test is
    // kept inline at the callers.
    name.len() >= 13 && spells_framing(name)
}

fn spells_framing(name: &[u8]) -> bool {
    if name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"content-length")
    {
        return false;
    }
    let mut letters = name
        .iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(u8::to_ascii_lowercase);
    let same = |target: &[u8], letters: &mut dyn Iterator<Item = u8>| {
        let mut n = 0;
        for b in letters {
            if target.get(n) != Some(&b) {
                return false;
            }
            n += 1;
        }
        n == target.len()
    };
    let first = name.iter().find(|b| b.is_ascii_alphanumeric());
    match first.map(u8::to_ascii_lowercase) {
        Some(b't') => same(b"transferencoding", &mut letters),
        Some(b'c') => same(b"contentlength", &mut letters),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_look_alikes() {
        for alike in [
            &b"Transfer_Encoding"[..],
            b"transfer.encoding",
            b"TransferEncoding",
            b"Content_Length",
            b"-content-length-",
            b"Content-Length ",
            b"\x0bContent-Length",
        ] {
            assert!(
                looks_like_framing(alike),
                "{}",
                String::from_utf8_lossy(alike)
            );
        }
        for other in [
            &b"Transfer-Encoding"[..],
            b"CONTENT-LENGTH",
            b"Content-Type",
            b"X-Content-Length",
            b"Content-Length2",
            b"Content-Lengt",
            b"",
        ] {
            assert!(
                !looks_like_framing(other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn forwarded_length_of_bodies() {
        assert_eq!(Body::Done.forwarded_len(b"abc"), Ok(Some(0)));
        assert_eq!(Body::Length(2).forwarded_len(b"abc"), Ok(Some(2)));
        assert_eq!(Body::Length(5).forwarded_len(b"abc"), Ok(None));
        assert_eq!(
            Body::chunked().forwarded_len(b"1\r\na\r\n0\r\n\r\nX"),
            Ok(Some(11))
        );
        assert_eq!(Body::chunked().forwarded_len(b"1\r\na\r\n0\r\n"), Ok(None));
        assert_eq!(Body::UntilClose.forwarded_len(b"abc"), Ok(None));
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let mut body = Body::Length(3);
        assert_eq!(
            body.next_run(b"abcdef").unwrap(),
            Run {
                len: 3,
                payload: true
            }
        );
        assert!(body.is_done());
        assert_eq!(body.next_run(b"def").unwrap().len, 0);
    }

    #[test]
    fn until_close_takes_everything() {
        let mut body = Body::UntilClose;
        assert_eq!(body.next_run(b"abc").unwrap().len, 3);
        assert!(!body.is_done());
    }
}
