//! Moving one message body from a source buffer to a destination socket.
//!
//! Bytes are written straight from the buffer they were read into (no second copy);
//! the body framing decides how many belong to the current message, so a pipelined
//! request that follows stays in the buffer untouched. With `dechunk` only payload
//! bytes are written (an HTTP/1.0 client reading a chunked response).

use crate::buffer::Buf;
use crate::http::chunked::ChunkError;
use crate::http::framing::Body;
use std::io::{self, IoSlice, Write};

#[derive(Debug)]
pub enum PipeError {
    Framing(ChunkError),
    Write(io::Error),
}

/// What one `pump` took: bytes of the prefix written, bytes of the source consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub prefix: usize,
    pub body: usize,
}

impl Moved {
    pub fn any(&self) -> bool {
        self.prefix + self.body > 0
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Pipe {
    pub body: Body,
    /// Bytes at the front of the source buffer that belong to the body and wait to be written.
    ready: usize,
    dechunk: bool,
    /// Any body byte written so far.
    pub started: bool,
    /// Body bytes written so far, framing included (the access log's byte counts).
    pub moved: u64,
}

impl Pipe {
    pub fn new(body: Body, dechunk: bool) -> Pipe {
        Pipe {
            body,
            ready: 0,
            dechunk,
            started: false,
            moved: 0,
        }
    }

    /// Every byte of the message has been written.
    pub fn finished(&self) -> bool {
        self.ready == 0 && self.body.is_done()
    }

    /// Writes `prefix` (a head not yet sent), then as much of the body as is buffered
    /// and the destination takes. A head and the body bytes already buffered go out in one
    /// vectored write: one segment instead of two, which on loopback is most of the cost.
    pub fn pump(
        &mut self,
        prefix: &[u8],
        src: &mut Buf,
        dst: &mut impl Write,
        writable: &mut bool,
    ) -> Result<Moved, PipeError> {
        let mut moved = Moved::default();
        loop {
            if self.ready == 0 && !self.body.is_done() && !src.is_empty() {
                let run = self
                    .body
                    .next_run(src.bytes())
                    .map_err(PipeError::Framing)?;
                if run.len > 0 && !run.payload && self.dechunk {
                    src.consume(run.len);
                    moved.body += run.len;
                    continue;
                }
                self.ready = run.len;
                // Passing framing through: gather every run buffered into one write.
                while !self.dechunk && !self.body.is_done() && self.ready < src.len() {
                    let more = self
                        .body
                        .next_run(&src.bytes()[self.ready..])
                        .map_err(PipeError::Framing)?;
                    if more.len == 0 {
                        break;
                    }
                    self.ready += more.len;
                }
            }
            let pending = &prefix[moved.prefix..];
            if (self.ready == 0 && pending.is_empty()) || !*writable {
                return Ok(moved);
            }
            let body = &src.bytes()[..self.ready];
            let written = if pending.is_empty() {
                dst.write(body)
            } else if body.is_empty() {
                dst.write(pending)
            } else {
                dst.write_vectored(&[IoSlice::new(pending), IoSlice::new(body)])
            };
            match written {
                Ok(0) => return Err(PipeError::Write(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    let from_prefix = n.min(pending.len());
                    let from_body = n - from_prefix;
                    moved.prefix += from_prefix;
                    src.consume(from_body);
                    self.ready -= from_body;
                    self.started |= from_body > 0;
                    self.moved += from_body as u64;
                    moved.body += from_body;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *writable = false;
                    return Ok(moved);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PipeError::Write(e)),
            }
        }
    }

    /// True when the rest of the body has a known length of at least `min` bytes, and
    /// nothing classified is waiting in user space: it may be spliced.
    pub fn splice_worthy(&self, min: u64) -> bool {
        self.ready == 0 && !self.dechunk && matches!(self.body, Body::Length(n) if n >= min)
    }

    /// Bytes of a length-delimited body not yet moved.
    pub fn length_left(&self) -> u64 {
        match self.body {
            Body::Length(n) => n,
            _ => 0,
        }
    }

    /// `n` body bytes went through the kernel instead of the buffer.
    pub fn spliced(&mut self, n: usize) {
        self.moved += n as u64;
        if let Body::Length(left) = self.body {
            let left = left.saturating_sub(n as u64);
            self.body = if left == 0 {
                Body::Done
            } else {
                Body::Length(left)
            };
            self.started = true;
        }
    }

    /// The source closed: a close-delimited body is now complete.
    pub fn source_closed(&mut self) -> bool {
        if self.body == Body::UntilClose {
            self.body = Body::Done;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufPool;

    #[test]
    fn leaves_the_next_message_in_the_buffer() {
        let mut src = BufPool::new(1).get();
        src.extend(b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n");
        let mut pipe = Pipe::new(Body::chunked(), false);
        let mut out = Vec::new();
        let mut writable = true;
        pipe.pump(&[], &mut src, &mut out, &mut writable).unwrap();
        assert!(pipe.finished());
        assert_eq!(out, b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(src.bytes(), b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn dechunks_for_http10_clients() {
        let mut src = BufPool::new(1).get();
        src.extend(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        let mut pipe = Pipe::new(Body::chunked(), true);
        let mut out = Vec::new();
        let mut writable = true;
        pipe.pump(&[], &mut src, &mut out, &mut writable).unwrap();
        assert!(pipe.finished());
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn waits_for_writability() {
        let mut src = BufPool::new(1).get();
        src.extend(b"abc");
        let mut pipe = Pipe::new(Body::Length(5), false);
        let mut out = Vec::new();
        let mut writable = false;
        assert!(!pipe
            .pump(&[], &mut src, &mut out, &mut writable)
            .unwrap()
            .any());
        writable = true;
        let moved = pipe
            .pump(b"HEAD", &mut src, &mut out, &mut writable)
            .unwrap();
        assert_eq!(moved, Moved { prefix: 4, body: 3 });
        assert_eq!(out, b"HEADabc");
        assert!(!pipe.finished());
    }
}
