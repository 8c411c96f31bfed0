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

#[cfg(test)]
mod tests {
    use super::*;

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
