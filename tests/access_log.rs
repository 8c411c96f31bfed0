//! Access log (issue 9 item 2; spec §12.1): one line per HTTP request and per TCP
//! connection in ELB Classic's field order and formats, parsed here field by field;
//! and log rotation: the file moved away, SIGUSR1, and new lines land in a new file.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(10);

fn log_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("clb-access-{}-{tag}.log", std::process::id()))
}

/// Splits a line into ELB's 15 fields (the two quoted ones kept whole, quotes removed).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').expect("closing quote");
            out.push(quoted[..end].to_string());
            rest = quoted[end + 1..].trim_start_matches(' ');
        } else {
            let (field, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push(field.to_string());
            rest = tail;
        }
    }
    out
}

fn lines_in(path: &PathBuf, at_least: usize) -> Vec<String> {
    let mut lines = Vec::new();
    assert!(
        wait_until(SOON, || {
            lines = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect();
            lines.len() >= at_least
        }),
        "{} lines in {}: {lines:?}",
        lines.len(),
        path.display()
    );
    lines
}

fn is_time(field: &str) -> bool {
    field == "-1"
        || field
            .split_once('.')
            .is_some_and(|(s, f)| s.parse::<u64>().is_ok() && f.len() == 6)
}

#[test]
fn http_requests_and_refusals_are_logged_field_by_field() {
    let path = log_path("http");
    let _ = std::fs::remove_file(&path);
    let backend = Backend::echo("127.0.0.2", "i-1");
    let clb = Clb::http(
        &[backend.instance("zone-a")],
        &["--access-log", path.to_str().unwrap(), "--name", "web"],
    );
    let mut client = Client::connect(clb.addr);
    let first = client.request(
        "GET /a/b?c=1 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: test-agent/1.0\r\n\r\n",
    );
    assert_eq!(first.status, 200);
    let answer = client.request("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(answer.status, 200);
    let mut bad = TcpStream::connect(clb.addr).unwrap();
    bad.write_all(b"NOT HTTP\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    bad.set_read_timeout(Some(SOON)).unwrap();
    let _ = bad.read_to_end(&mut sink);

    let lines = lines_in(&path, 3);
    // Found by content: the harness's own connections may add lines of their own.
    let line = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}: {lines:#?}"))
    };
    let get = fields(line("\"GET http://www.example.com"));
    assert_eq!(get.len(), 15, "{get:?}");
    assert!(
        get[0].ends_with('Z') && get[0].contains('T') && get[0].len() == 27,
        "{get:?}"
    );
    assert_eq!(get[1], "web");
    assert!(get[2].starts_with("127.0.0.1:"), "{get:?}");
    assert_eq!(get[3], backend.addr.to_string());
    assert!(get[4..7].iter().all(|f| is_time(f) && f != "-1"), "{get:?}");
    assert_eq!((get[7].as_str(), get[8].as_str()), ("200", "200"));
    assert_eq!(get[9], "0");
    assert_eq!(get[10], first.wire_body.len().to_string());
    assert_eq!(
        get[11],
        format!(
            "GET http://www.example.com:{}/a/b?c=1 HTTP/1.1",
            clb.addr.port()
        )
    );
    assert_eq!(get[12], "test-agent/1.0");
    assert_eq!((get[13].as_str(), get[14].as_str()), ("-", "-"));

    let post = fields(line("\"POST "));
    assert_eq!(post[9], "5", "{post:?}");
    assert!(post[11].starts_with("POST http://h:"), "{post:?}");

    let refused = fields(line(" 400 - "));
    assert_eq!(refused[3], "-");
    assert_eq!(&refused[4..7], ["-1", "-1", "-1"]);
    assert_eq!((refused[7].as_str(), refused[8].as_str()), ("400", "-"));
    assert_eq!(refused[11], "- - - ");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn sigusr1_reopens_the_file_for_rotation() {
    let path = log_path("rotate");
    let rotated = log_path("rotate-1");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&rotated);
    let backend = Backend::echo("127.0.0.2", "i-1");
    let clb = Clb::http(
        &[backend.instance("zone-a")],
        &["--access-log", path.to_str().unwrap()],
    );
    let mut client = Client::connect(clb.addr);
    assert_eq!(client.request(&get("/before")).status, 200);
    lines_in(&path, 1);
    std::fs::rename(&path, &rotated).unwrap();
    clb.signal(libc::SIGUSR1);
    assert!(
        clb.wait_for_log("access log reopened", 1, SOON),
        "{}",
        clb.log_text()
    );
    assert_eq!(client.request(&get("/after")).status, 200);
    let new = lines_in(&path, 1);
    assert!(new[0].contains("/after"), "{new:?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/before") && !old.contains("/after"), "{old}");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&rotated);
}

#[test]
fn tcp_connections_are_logged_with_their_byte_counts() {
    let path = log_path("tcp");
    let _ = std::fs::remove_file(&path);
    let backend = TcpBackend::start("127.0.0.2", "i-1", TcpBehavior::Echo);
    let clb = Clb::tcp(
        &[backend.instance("zone-a")],
        &["--access-log", path.to_str().unwrap()],
    );
    let mut conn = TcpStream::connect(clb.addr).unwrap();
    conn.write_all(&[7u8; 82]).unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    conn.set_read_timeout(Some(SOON)).unwrap();
    conn.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed.len(), 82);
    // The harness's "is it listening" connection may be logged too (0 bytes each way).
    let mut lines = Vec::new();
    assert!(wait_until(SOON, || {
        lines = lines_in(&path, 1);
        lines.iter().any(|l| l.contains(" 82 82 "))
    }));
    let f = fields(lines.iter().find(|l| l.contains(" 82 82 ")).unwrap());
    assert_eq!(f.len(), 15, "{f:?}");
    assert_eq!(f[3], backend.addr.to_string());
    assert_eq!((f[7].as_str(), f[8].as_str()), ("-", "-"));
    assert_eq!((f[9].as_str(), f[10].as_str()), ("82", "82"));
    assert_eq!(f[11], "- - - ");
    assert_eq!(f[12], "-");
    let _ = std::fs::remove_file(&path);
}
