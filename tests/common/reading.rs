//! Reading a raw socket in tests with a deadline: exactly `n` bytes, to EOF, until
//! closed; and short previews of bytes for failure messages.

use super::*;

/// Reads exactly `n` bytes; `Err` says what arrived instead (EOF, reset or timeout
/// after so many bytes).
pub fn read_exactly(stream: &mut TcpStream, n: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match stream.read(&mut out[got..]) {
            Ok(0) => {
                return Err(format!(
                    "EOF after {got} of {n} bytes: {:?}",
                    preview(&out[..got])
                ))
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(format!(
                    "read timed out after {got} of {n} bytes: {:?}",
                    preview(&out[..got])
                ))
            }
            Err(e) => {
                return Err(format!(
                    "{e} after {got} of {n} bytes: {:?}",
                    preview(&out[..got])
                ))
            }
        }
    }
    Ok(out)
}

/// How [`read_until_end`] stopped.
pub enum End {
    /// EOF (after a TLS peer's close_notify, on a TLS stream).
    Eof,
    /// A read failed: a reset (or, on a TLS stream, a close without close_notify).
    Failed(io::Error),
    /// `within` passed with the stream still open.
    Open,
    /// More than the most bytes wanted arrived.
    TooMuch,
}

/// Reads into `out` until the stream ends (EOF or a failed read), more than `max`
/// bytes have arrived, or `within` passes.
pub fn read_until_end(
    stream: &mut impl Transport,
    out: &mut Vec<u8>,
    max: usize,
    within: Duration,
) -> End {
    let deadline = Instant::now() + within;
    let mut chunk = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return End::Open;
        }
        stream
            .socket()
            .set_read_timeout(Some(left))
            .expect("timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return End::Eof,
            Ok(k) => {
                out.extend_from_slice(&chunk[..k]);
                if out.len() > max {
                    return End::TooMuch;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
            Err(e) => return End::Failed(e),
        }
    }
}

/// Reads until EOF, at most `max` bytes and for at most `within`; `Err` says what
/// happened instead (a reset, a timeout, too many bytes).
pub fn read_to_eof(
    stream: &mut impl Transport,
    max: usize,
    within: Duration,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match read_until_end(stream, &mut out, max, within) {
        End::Eof => Ok(out),
        End::Failed(e) => Err(format!("{e} after {} bytes instead of EOF", out.len())),
        End::Open => Err(format!(
            "no EOF within {within:?}; {} bytes so far",
            out.len()
        )),
        End::TooMuch => Err(format!("more than {max} bytes before EOF")),
    }
}

/// Whether `stream` ends (EOF or reset) within `within` with nothing unread before the
/// end; `Err` says what arrived instead.
pub fn expect_eof(stream: &mut impl Transport, within: Duration) -> Result<(), String> {
    let mut out = Vec::new();
    match read_until_end(stream, &mut out, 0, within) {
        End::Eof | End::Failed(_) => Ok(()),
        End::Open => Err(format!("connection still open after {within:?}")),
        End::TooMuch => Err(format!(
            "unexpected bytes instead of the end: {:?}",
            preview(&out)
        )),
    }
}

/// Reads whatever comes until the peer ends the connection (EOF or reset); `Err` if it
/// is still open after `within`.
pub fn read_until_closed(stream: &mut impl Transport, within: Duration) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match read_until_end(stream, &mut out, usize::MAX, within) {
        End::Eof | End::Failed(_) => Ok(out),
        End::Open | End::TooMuch => Err(format!(
            "still open after {within:?}, having sent {:?}",
            preview(&out)
        )),
    }
}

/// The first bytes of `bytes`, escaped, for failure messages.
pub fn preview(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(120)];
    let mut s: String = head.escape_ascii().to_string();
    if bytes.len() > head.len() {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

/// Where `got` first differs from `want`, for failure messages about large payloads.
pub fn first_difference(got: &[u8], want: &[u8]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => format!(
            "byte {i} differs: got {:?}, want {:?} (lengths {} and {})",
            preview(&got[i..]),
            preview(&want[i..]),
            got.len(),
            want.len()
        ),
        None if got.len() == want.len() => "equal".to_string(),
        None => format!("lengths differ: got {}, want {}", got.len(), want.len()),
    }
}
