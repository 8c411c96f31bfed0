//! Chunked transfer coding (RFC 9112 §7.1), decoded only to find where a body ends.
//!
//! The decoder walks the bytes and reports them as runs of payload or framing; it never
//! copies. A proxy forwarding to an HTTP/1.1 peer passes both kinds through unchanged; one
//! answering an HTTP/1.0 client forwards only payload. Since the framing goes on byte for
//! byte, only valid syntax may pass: CRLF is required (a bare LF is an error), sizes are
//! hex digits only and bounded, a chunk extension follows RFC 9112 §7.1.1's grammar
//! (`5;`, `5 `, `5;a[=b` and control bytes are errors), a trailer line is a field line,
//! and anything after a chunk's data other than CRLF is an error. A request whose chunks
//! break these rules is answered 400 (README, "Request framing").

use std::fmt;

/// Chunk sizes above this are refused; no real body needs 2^60 bytes in one chunk.
const MAX_CHUNK_SIZE: u64 = 1 << 60;
/// A chunk-size line (size + extensions) or trailer line longer than this is refused.
const MAX_LINE: u32 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    BadSize,
    SizeTooLarge,
    BadLineEnd,
    LineTooLong,
    BadExtension,
    BadTrailer,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkError::BadSize => "invalid chunk size",
            ChunkError::SizeTooLarge => "chunk size too large",
            ChunkError::BadLineEnd => "chunk framing line not ended by CRLF",
            ChunkError::LineTooLong => "chunk size or trailer line too long",
            ChunkError::BadExtension => "invalid chunk extension",
            ChunkError::BadTrailer => "invalid trailer field line",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size; `seen` is false before the first digit.
    Size {
        size: u64,
        seen: bool,
    },
    /// After the size: `*( BWS ";" BWS name [ BWS "=" BWS value ] )` up to CR.
    Ext {
        size: u64,
        at: Ext,
    },
    /// Saw CR after a size line; LF must follow.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

/// Where in a chunk extension list (RFC 9112 §7.1.1) the decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ext {
    /// Whitespace after the size or a value: only more of it or `;` may follow.
    Bws,
    /// After `;`: whitespace, then a name.
    NameStart,
    Name,
    /// Whitespace after a name: `=` or `;` must follow.
    AfterName,
    /// After `=`: whitespace, then a token or a quoted string.
    ValueStart,
    Token,
    Quoted,
    QuotedPair,
    /// Right after a closing quote.
    AfterQuoted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
    line: u32,
}

/// A run of input bytes that are all payload or all framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub len: usize,
    pub payload: bool,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size {
                size: 0,
                seen: false,
            },
            line: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Classifies the longest prefix of `input` that is all payload or all framing.
    /// Returns a zero-length run only for empty input or when the body is done.
    pub fn next_run(&mut self, input: &[u8]) -> Result<Run, ChunkError> {
        if let State::Data { left } = self.state {
            let n = (input.len() as u64).min(left) as usize;
            let left = left - n as u64;
            self.state = if left == 0 {
                State::DataCr
            } else {
                State::Data { left }
            };
            return Ok(Run {
                len: n,
                payload: true,
            });
        }
        let mut used = 0;
        for &b in input {
            if matches!(self.state, State::Data { .. } | State::Done) {
                break;
            }
            self.framing_byte(b)?;
            used += 1;
        }
        Ok(Run {
            len: used,
            payload: false,
        })
    }

    fn framing_byte(&mut self, b: u8) -> Result<(), ChunkError> {
        self.line += 1;
        if self.line > MAX_LINE {
            return Err(ChunkError::LineTooLong);
        }
        self.state = match self.state {
            State::Size { size, seen } => match hex(b) {
                Some(d) => {
                    let size = size
                        .checked_mul(16)
                        .map(|s| s + d as u64)
                        .ok_or(ChunkError::SizeTooLarge)?;
                    if size > MAX_CHUNK_SIZE {
                        return Err(ChunkError::SizeTooLarge);
                    }
                    State::Size { size, seen: true }
                }
                None if !seen => return Err(ChunkError::BadSize),
                None => return self.after_size(size, b),
            },
            State::Ext { size, at } => match extension_byte(at, b)? {
                Some(at) => State::Ext { size, at },
                None => State::SizeLf { size },
            },
            State::SizeLf { size } => match b {
                b'\n' => {
                    self.line = 0;
                    if size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data { left: size }
                    }
                }
                _ => return Err(ChunkError::BadLineEnd),
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(ChunkError::BadLineEnd),
            },
            State::DataLf => match b {
                b'\n' => {
                    self.line = 0;
                    State::Size {
                        size: 0,
                        seen: false,
                    }
                }
                _ => return Err(ChunkError::BadLineEnd),
            },
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                b'\n' => return Err(ChunkError::BadLineEnd),
                _ if is_tchar(b) => State::TrailerName,
                _ => return Err(ChunkError::BadTrailer),
            },
            State::TrailerName => match b {
                b':' => State::Trailer,
                _ if is_tchar(b) => State::TrailerName,
                _ => return Err(ChunkError::BadTrailer),
            },
            State::Trailer => match b {
                b'\r' => State::TrailerLf,
                b'\n' => return Err(ChunkError::BadLineEnd),
                b'\t' | b' '..=b'~' | 0x80.. => State::Trailer,
                _ => return Err(ChunkError::BadTrailer),
            },
            State::TrailerLf => match b {
                b'\n' => {
                    self.line = 0;
                    State::TrailerStart
                }
                _ => return Err(ChunkError::BadLineEnd),
            },
            State::FinalLf => match b {
                b'\n' => State::Done,
                _ => return Err(ChunkError::BadLineEnd),
            },
            State::Data { .. } | State::Done => self.state,
        };
        Ok(())
    }

    /// The byte right after the last size digit: extension, whitespace or CR.
    fn after_size(&mut self, size: u64, b: u8) -> Result<(), ChunkError> {
        self.state = match b {
            b'\r' => State::SizeLf { size },
            b';' => State::Ext {
                size,
                at: Ext::NameStart,
            },
            b' ' | b'\t' => State::Ext { size, at: Ext::Bws },
            b'\n' => return Err(ChunkError::BadLineEnd),
            _ => return Err(ChunkError::BadSize),
        };
        Ok(())
    }
}

/// One byte of a chunk extension list: the next place in it, or `None` at the CR that
/// ends the size line.
fn extension_byte(at: Ext, b: u8) -> Result<Option<Ext>, ChunkError> {
    let ws = b == b' ' || b == b'\t';
    let next = match at {
        Ext::Bws if ws => Ext::Bws,
        Ext::Bws if b == b';' => Ext::NameStart,
        Ext::NameStart if ws => Ext::NameStart,
        Ext::NameStart if is_tchar(b) => Ext::Name,
        Ext::Name if is_tchar(b) => Ext::Name,
        Ext::Name | Ext::AfterName if ws => Ext::AfterName,
        Ext::Name | Ext::AfterName if b == b'=' => Ext::ValueStart,
        Ext::Name | Ext::AfterName | Ext::Token | Ext::AfterQuoted if b == b';' => Ext::NameStart,
        Ext::Name | Ext::Token | Ext::AfterQuoted if b == b'\r' => return Ok(None),
        Ext::ValueStart if ws => Ext::ValueStart,
        Ext::ValueStart if b == b'"' => Ext::Quoted,
        Ext::ValueStart | Ext::Token if is_tchar(b) => Ext::Token,
        Ext::Token | Ext::AfterQuoted if ws => Ext::Bws,
        Ext::Quoted if b == b'"' => Ext::AfterQuoted,
        Ext::Quoted if b == b'\\' => Ext::QuotedPair,
        // qdtext: HTAB, SP, VCHAR but `"` and `\`, obs-text.
        Ext::Quoted if matches!(b, b'\t' | b' '..=b'~' | 0x80..) => Ext::Quoted,
        Ext::QuotedPair if matches!(b, b'\t' | b' '..=b'~' | 0x80..) => Ext::Quoted,
        _ if b == b'\n' => return Err(ChunkError::BadLineEnd),
        _ => return Err(ChunkError::BadExtension),
    };
    Ok(Some(next))
}

/// RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns (payload, framing bytes, done).
    fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut payload = Vec::new();
        let mut framing = 0;
        for piece in input.chunks(step) {
            let mut rest = piece;
            while !rest.is_empty() && !d.is_done() {
                let run = d.next_run(rest)?;
                if run.payload {
                    payload.extend_from_slice(&rest[..run.len]);
                } else {
                    framing += run.len;
                }
                rest = &rest[run.len..];
            }
        }
        Ok((payload, framing, d.is_done()))
    }

    #[test]
    fn decodes_in_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..body.len() {
            let (payload, framing, done) = decode(body, step).unwrap();
            assert_eq!(payload, b"hello world");
            assert_eq!(payload.len() + framing, body.len());
            assert!(done);
        }
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        let mut d = ChunkedDecoder::new();
        let input = b"0\r\n\r\nGET / HTTP/1.1\r\n";
        let run = d.next_run(input).unwrap();
        assert_eq!(
            run,
            Run {
                len: 5,
                payload: false
            }
        );
        assert!(d.is_done());
    }

    #[test]
    fn refuses_ambiguous_framing() {
        assert_eq!(decode(b"5\nhello\r\n", 64), Err(ChunkError::BadLineEnd));
        assert_eq!(decode(b"x\r\n", 64), Err(ChunkError::BadSize));
        assert_eq!(decode(b"\r\n", 64), Err(ChunkError::BadSize));
        assert_eq!(decode(b"5\r\nhelloX\r\n", 64), Err(ChunkError::BadLineEnd));
        assert_eq!(
            decode(b"fffffffffffffffffff\r\n", 64),
            Err(ChunkError::SizeTooLarge)
        );
        assert_eq!(decode(b"+5\r\n", 64), Err(ChunkError::BadSize));
        assert_eq!(decode(b"0\r\n\n", 64), Err(ChunkError::BadLineEnd));
    }

    #[test]
    fn extensions_follow_the_grammar() {
        for good in [
            &b"5;a\r\nhello\r\n0\r\n\r\n"[..],
            b"5 ; a = b ; c=\"d \\\" e\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=b\r\nhello\r\n0;z\r\nT-x: 1\r\n\r\n",
        ] {
            assert!(
                decode(good, 64).unwrap().2,
                "{}",
                String::from_utf8_lossy(good)
            );
        }
        for (bad, error) in [
            (&b"5;\r\n"[..], ChunkError::BadExtension),
            (b"5 \r\n", ChunkError::BadExtension),
            (b"5;bad[=x\r\n", ChunkError::BadExtension),
            (b"5;a\0\r\n", ChunkError::BadExtension),
            (b"5;a=\r\n", ChunkError::BadExtension),
            (b"5;a=\"b\r\n", ChunkError::BadExtension),
            (b"5;a=b \r\n", ChunkError::BadExtension),
            (b"5;a\n", ChunkError::BadLineEnd),
            (b"0\r\n: x\r\n\r\n", ChunkError::BadTrailer),
            (b"0\r\n x: y\r\n\r\n", ChunkError::BadTrailer),
            (b"0\r\nx: \0\r\n\r\n", ChunkError::BadTrailer),
            (b"0\r\nx\r\n\r\n", ChunkError::BadTrailer),
        ] {
            assert_eq!(
                decode(bad, 64),
                Err(error),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bounds_extension_lines() {
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'a', 5000));
        assert_eq!(decode(&long, 64), Err(ChunkError::LineTooLong));
    }
}
