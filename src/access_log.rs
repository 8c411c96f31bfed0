//! Access log (`--access-log FILE|-`): one line per HTTP request or TCP connection in
//! ELB Classic's exact field order and formats (spec §12.1).
//!
//! Workers format lines into their own buffer and hand full buffers (or, once a second,
//! whatever they hold) to the log thread over a channel; only that thread writes to the
//! file, so a slow disk never blocks an event loop. SIGUSR1 makes the thread reopen the
//! file (log rotation: move the file away, then signal).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

pub enum Message {
    Lines(Vec<u8>),
    /// SIGUSR1: close and open the file again.
    Reopen,
}

/// Starts the log thread; the sender goes to every worker (and the signal thread).
pub fn start(target: Target) -> io::Result<Sender<Message>> {
    let mut out = open(&target)?;
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("clb-access-log".to_string())
        .spawn(move || run(&target, &mut out, &receiver))?;
    Ok(sender)
}

fn open(target: &Target) -> io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        Target::Stdout => Box::new(io::stdout()),
        Target::File(path) => Box::new(open_file(path)?),
    })
}

fn open_file(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn run(target: &Target, out: &mut Box<dyn Write + Send>, receiver: &Receiver<Message>) {
    while let Ok(message) = receiver.recv() {
        match message {
            Message::Lines(lines) => {
                if let Err(e) = out.write_all(&lines).and_then(|()| out.flush()) {
                    log::error!("access log: {e}; {} bytes of lines lost", lines.len());
                }
            }
            Message::Reopen => match open(target) {
                Ok(new) => {
                    *out = new;
                    log::info!("access log reopened");
                }
                Err(e) => log::error!("access log: cannot reopen, still writing the old file: {e}"),
            },
        }
    }
}

/// The `request` and `user_agent` fields of a request head: `METHOD
/// scheme://host:port/path HTTP/x.y` with the Host header's host and the listener's port
/// (a request-target already in absolute form is kept as sent).
pub fn request_fields(head: &[u8], scheme: &str, listener_port: u16) -> (String, String) {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(head).is_err() {
        return ("- - - ".to_string(), "-".to_string());
    }
    let method = req.method.unwrap_or("-");
    let path = req.path.unwrap_or("-");
    let version = if req.version == Some(0) { "1.0" } else { "1.1" };
    let find = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let host = find("host").unwrap_or_default();
    // The Host header's port, if any, gives way to the listener's (ELB logs that one).
    let host = strip_port(&host);
    let request = if path.starts_with('/') || path == "*" {
        format!("{method} {scheme}://{host}:{listener_port}{path} HTTP/{version}")
    } else {
        format!("{method} {path} HTTP/{version}")
    };
    (
        request,
        find("user-agent").unwrap_or_else(|| "-".to_string()),
    )
}

/// `name:port` → `name`, `[v6]:port` → `[v6]`; anything else as it is.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.split_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// One log line's fields (spec §12.1.4).
pub struct Entry<'a> {
    /// When the request (or connection) was received.
    pub time: SystemTime,
    pub lb: &'a str,
    pub client: SocketAddr,
    /// The instance that processed it; `None` when none did.
    pub backend: Option<SocketAddr>,
    /// `None` is ELB's `-1`.
    pub request_processing: Option<Duration>,
    pub backend_processing: Option<Duration>,
    pub response_processing: Option<Duration>,
    /// HTTP only; `None` is `-`.
    pub elb_status: Option<u16>,
    pub backend_status: Option<u16>,
    pub received_bytes: u64,
    pub sent_bytes: u64,
    /// `METHOD scheme://host:port/path HTTP/x.y`, or `None` for TCP (`- - - `).
    pub request: Option<&'a str>,
    /// `None` for TCP (`-`).
    pub user_agent: Option<&'a str>,
    /// (cipher, protocol) after a TLS handshake.
    pub tls: Option<(&'static str, &'static str)>,
}

/// Appends `entry` as one line to `out`.
pub fn format(entry: &Entry<'_>, out: &mut Vec<u8>) {
    let _ = write_timestamp(entry.time, out);
    let _ = write!(out, " {} {} ", entry.lb, entry.client);
    match entry.backend {
        Some(addr) => {
            let _ = write!(out, "{addr} ");
        }
        None => out.extend_from_slice(b"- "),
    }
    for time in [
        entry.request_processing,
        entry.backend_processing,
        entry.response_processing,
    ] {
        match time {
            Some(t) => {
                let _ = write!(out, "{:.6} ", t.as_secs_f64());
            }
            None => out.extend_from_slice(b"-1 "),
        }
    }
    for status in [entry.elb_status, entry.backend_status] {
        match status {
            Some(s) => {
                let _ = write!(out, "{s} ");
            }
            None => out.extend_from_slice(b"- "),
        }
    }
    let _ = write!(out, "{} {} ", entry.received_bytes, entry.sent_bytes);
    out.push(b'"');
    match entry.request {
        Some(line) => push_quoted(line, out),
        None => out.extend_from_slice(b"- - - "),
    }
    out.extend_from_slice(b"\" \"");
    match entry.user_agent {
        // ELB truncates the user agent at 8 KB.
        Some(agent) => push_quoted(truncate(agent, 8 * 1024), out),
        None => out.push(b'-'),
    }
    out.push(b'"');
    match entry.tls {
        Some((cipher, protocol)) => {
            let _ = write!(out, " {cipher} {protocol}");
        }
        None => out.extend_from_slice(b" - -"),
    }
    out.push(b'\n');
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A quote or a line break inside a quoted field would split the line: escaped.
fn push_quoted(text: &str, out: &mut Vec<u8>) {
    for &b in text.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\r' | b'\n' | 0..=0x1f | 0x7f => {
                let _ = write!(out, "\\x{b:02x}");
            }
            _ => out.push(b),
        }
    }
}

/// ISO 8601 UTC with microseconds: `2015-05-13T23:39:43.945958Z`.
fn write_timestamp(time: SystemTime, out: &mut Vec<u8>) -> io::Result<()> {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::calendar::civil_from_days(days as i64);
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into())
    }

    #[test]
    fn the_documented_http_example_round_trips() {
        let mut out = Vec::new();
        format(
            &Entry {
                time: at(1_431_560_383, 945_958),
                lb: "my-loadbalancer",
                client: "192.168.131.39:2817".parse().unwrap(),
                backend: Some("10.0.0.1:80".parse().unwrap()),
                request_processing: Some(Duration::from_nanos(73_000)),
                backend_processing: Some(Duration::from_nanos(1_048_000)),
                response_processing: Some(Duration::from_nanos(57_000)),
                elb_status: Some(200),
                backend_status: Some(200),
                received_bytes: 0,
                sent_bytes: 29,
                request: Some("GET http://www.example.com:80/ HTTP/1.1"),
                user_agent: Some("curl/7.38.0"),
                tls: None,
            },
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 \
             0.000073 0.001048 0.000057 200 200 0 29 \"GET http://www.example.com:80/ HTTP/1.1\" \
             \"curl/7.38.0\" - -\n"
        );
    }

    #[test]
    fn tcp_lines_use_dashes() {
        let mut out = Vec::new();
        format(
            &Entry {
                time: at(0, 0),
                lb: "lb",
                client: "10.0.0.9:5000".parse().unwrap(),
                backend: None,
                request_processing: None,
                backend_processing: None,
                response_processing: None,
                elb_status: None,
                backend_status: None,
                received_bytes: 82,
                sent_bytes: 305,
                request: None,
                user_agent: None,
                tls: Some(("ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2")),
            },
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:00.000000Z lb 10.0.0.9:5000 - -1 -1 -1 - - 82 305 \"- - - \" \"-\" \
             ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2\n"
        );
    }

    #[test]
    fn quotes_and_line_breaks_cannot_split_a_line() {
        let mut out = Vec::new();
        push_quoted("a\"b\r\nc", &mut out);
        assert_eq!(out, b"a\\\"b\\x0d\\x0ac");
    }

    #[test]
    fn the_request_field_uses_the_listener_port() {
        let (request, agent) = request_fields(
            b"GET /a?b HTTP/1.1\r\nHost: www.example.com:8080\r\nUser-Agent: curl/8\r\n\r\n",
            "http",
            80,
        );
        assert_eq!(request, "GET http://www.example.com:80/a?b HTTP/1.1");
        assert_eq!(agent, "curl/8");
        let (request, agent) = request_fields(b"GET / HTTP/1.0\r\n\r\n", "https", 443);
        assert_eq!(request, "GET https://:443/ HTTP/1.0");
        assert_eq!(agent, "-");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
