//! WebSocket through HTTP listeners (issue 8 item 3): the handshake's `Upgrade` reaches
//! the instance, its 101 reaches the client, and then messages flow both ways untouched
//! (a Python standard-library echo server, tests/websocket/echo_server.py); a 101 that
//! nobody asked for is still a 502.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(10);

struct EchoServer {
    child: Child,
    addr: SocketAddr,
}

impl EchoServer {
    fn start(ip_str: &str) -> EchoServer {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/websocket/echo_server.py"
        );
        let mut child = Command::new("python3")
            .args([script, ip_str])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed (see .ci/run)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the echo server's port");
        EchoServer {
            child,
            addr: format!("{ip_str}:{port}").parse().unwrap(),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A masked client frame (RFC 6455 §5.2).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65_536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads one unmasked server frame: (opcode, payload).
fn read_frame(conn: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut hdr = [0u8; 2];
    conn.read_exact(&mut hdr).unwrap();
    let mut len = u64::from(hdr[1] & 0x7f);
    if len == 126 {
        let mut ext = [0u8; 2];
        conn.read_exact(&mut ext).unwrap();
        len = u64::from(u16::from_be_bytes(ext));
    } else if len == 127 {
        let mut ext = [0u8; 8];
        conn.read_exact(&mut ext).unwrap();
        len = u64::from_be_bytes(ext);
    }
    let mut payload = vec![0u8; len as usize];
    conn.read_exact(&mut payload).unwrap();
    (hdr[0] & 0x0f, payload)
}

fn handshake(conn: &mut TcpStream) -> String {
    conn.write_all(
        b"GET /chat HTTP/1.1\r\nHost: clb.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn messages_echo_through_clb_after_the_101() {
    let server = EchoServer::start("127.0.0.2");
    let instance = Instance::new("ws-1", server.addr, "zone-a").expecting_healthy(true);
    let check = format!("HTTP:{}/health", server.addr.port());
    let clb = Clb::http(&[instance], &["--health-check", &check]);
    let mut conn = TcpStream::connect(clb.addr).unwrap();
    conn.set_read_timeout(Some(SOON)).unwrap();
    let head = handshake(&mut conn);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // RFC 6455's example key and its accept value.
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    assert!(head.contains("X-Seen-Forwarded-For: 127.0.0.1"), "{head}");
    for text in ["hello", "through clb", ""] {
        conn.write_all(&frame(1, text.as_bytes())).unwrap();
        assert_eq!(read_frame(&mut conn), (1, text.as_bytes().to_vec()));
    }
    let big = pattern(300_000);
    conn.write_all(&frame(2, &big)).unwrap();
    let (opcode, echoed) = read_frame(&mut conn);
    assert_eq!(opcode, 2);
    assert!(echoed == big, "300 kB message differs");
    conn.write_all(&frame(8, b"")).unwrap();
    assert_eq!(read_frame(&mut conn).0, 8);
    // The instance closed after its close frame: so does clb.
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn many_websockets_at_once() {
    let server = EchoServer::start("127.0.0.2");
    let instance = Instance::new("ws-1", server.addr, "zone-a").expecting_healthy(true);
    let check = format!("HTTP:{}/health", server.addr.port());
    let clb = Clb::http(&[instance], &["--health-check", &check]);
    let addr = clb.addr;
    let threads: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                conn.set_read_timeout(Some(SOON)).unwrap();
                assert!(handshake(&mut conn).starts_with("HTTP/1.1 101"));
                for j in 0..10 {
                    let text = format!("client {i} message {j}");
                    conn.write_all(&frame(1, text.as_bytes())).unwrap();
                    assert_eq!(read_frame(&mut conn).1, text.into_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn an_unrequested_101_is_still_a_502() {
    let backend = Backend::start(
        "127.0.0.2",
        "i-1",
        Behavior::Raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec()),
    );
    let clb = Clb::http(&[backend.instance("zone-a")], &[]);
    let mut client = Client::connect(clb.addr);
    assert_eq!(client.request(&get("/no-upgrade")).status, 502);
}
