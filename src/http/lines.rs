//! Header lines copied from a parsed head into the head clb forwards.
//!
//! A kept header goes out byte-for-byte, name through value, ended by CRLF. Neighbouring
//! kept lines that were already contiguous and CRLF-ended in the input leave as one copy:
//! a head of eight kept headers is one `memcpy`, not sixteen appends (the appends were a
//! tenth of the instructions clb spends on a keep-alive request). The output is the same
//! byte for byte as copying line by line: a line whose ending is not exactly CRLF right
//! after its value (a bare LF, trailing whitespace) ends the run and is written by itself
//! with CRLF, as before.
//!
//! Everything else written to the head goes through `out()`, which writes the pending run
//! first, so the order of lines can never be mixed up.

use super::request::offset_in;
use crate::buffer::Buf;

pub(crate) struct LineCopier<'a, 'o> {
    input: &'a [u8],
    out: &'o mut Buf,
    /// Pending lines: `[start, end)` of `input`, from the first name to the last value's
    /// end (its CRLF is not included).
    run: Option<(usize, usize)>,
}

impl<'a, 'o> LineCopier<'a, 'o> {
    /// `input` is the head the headers were parsed from.
    pub fn new(input: &'a [u8], out: &'o mut Buf) -> Self {
        LineCopier {
            input,
            out,
            run: None,
        }
    }

    /// Copies header `h` as it came, then CRLF.
    pub fn copy(&mut self, h: &httparse::Header<'_>) {
        let name = h.name.as_bytes();
        let span = match (offset_in(self.input, name), offset_in(self.input, h.value)) {
            (Some(start), Some(value)) if !h.value.is_empty() && value >= start => {
                Some((start, value + h.value.len()))
            }
            _ => None,
        };
        match (span, self.run) {
            (Some((start, end)), Some((run_start, run_end)))
                if start == run_end + 2 && &self.input[run_end..start] == b"\r\n" =>
            {
                self.run = Some((run_start, end));
            }
            (Some(span), _) => {
                self.flush();
                self.run = Some(span);
            }
            (None, _) => {
                // An empty value (httparse's slice may not point into the input).
                self.flush();
                self.out.extend(name);
                self.out.extend(b": ");
                self.out.extend(h.value);
                self.out.extend(b"\r\n");
            }
        }
    }

    /// The head being written, with every line copied so far in it.
    pub fn out(&mut self) -> &mut Buf {
        self.flush();
        self.out
    }

    fn flush(&mut self) {
        if let Some((start, end)) = self.run.take() {
            match self.input.get(end..end + 2) {
                Some(b"\r\n") => self.out.extend(&self.input[start..end + 2]),
                _ => {
                    self.out.extend(&self.input[start..end]);
                    self.out.extend(b"\r\n");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufPool;

    fn copy_all(input: &[u8], keep: impl Fn(&str) -> bool) -> String {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        let config = httparse::ParserConfig::default();
        let _ = config.parse_request(&mut req, input);
        let mut out = BufPool::new(1).get();
        let mut lines = LineCopier::new(input, &mut out);
        for h in req.headers.iter().filter(|h| keep(h.name)) {
            lines.copy(h);
        }
        lines.out().extend(b"|");
        String::from_utf8_lossy(out.bytes()).into_owned()
    }

    #[test]
    fn contiguous_lines_leave_as_they_came() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\nX-A:  1\r\nX-B: 2\r\n\r\n";
        assert_eq!(
            copy_all(input, |_| true),
            "Host: a\r\nX-A:  1\r\nX-B: 2\r\n|"
        );
    }

    #[test]
    fn dropped_lines_split_the_run() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\nTE: x\r\nX-B: 2\r\n\r\n";
        assert_eq!(copy_all(input, |n| n != "TE"), "Host: a\r\nX-B: 2\r\n|");
    }

    #[test]
    fn line_ends_other_than_crlf_are_written_as_crlf() {
        let input = b"GET / HTTP/1.1\nHost: a  \nX-A: 1\r\nX-E:\r\nX-B: 2\n\n";
        assert_eq!(
            copy_all(input, |_| true),
            "Host: a\r\nX-A: 1\r\nX-E: \r\nX-B: 2\r\n|"
        );
    }
}
