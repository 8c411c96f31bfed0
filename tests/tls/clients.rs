//! Real third-party TLS clients against clb's HTTPS and SSL listeners (issue 6): `curl`
//! and `openssl s_client` (OpenSSL), and Python's `ssl` module through
//! `tests/tls/python_client.py`. Each verifies clb's certificate against the test CA for
//! the name it sends as SNI, as it would in production. A tool that is not installed
//! fails its test with a message naming it (`.ci/run` installs all three).

use crate::common::*;
use crate::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::io::{self, Read, Write};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long one run of a tool may take.
const TOOL_TIME: Duration = Duration::from_secs(20);

/// A third-party program running with piped stdin, stdout and stderr; killed on drop.
struct Tool {
    name: String,
    child: std::process::Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

/// How a [`Tool`] ended.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Tool {
    /// Starts `program`; panics naming it if it is not installed.
    fn spawn(program: &str, args: &[&str]) -> Tool {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => panic!(
                    "this test needs `{program}`, which is not installed (not on PATH); \
                     .ci/run installs it with apt-get"
                ),
                _ => panic!("cannot run `{program}`: {e}"),
            });
        let collect = |pipe: Box<dyn Read + Send>| {
            let out = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&out);
            let reader = thread::spawn(move || {
                let mut pipe = pipe;
                let mut chunk = [0u8; 65536];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    sink.lock()
                        .expect("output lock")
                        .extend_from_slice(&chunk[..n]);
                }
            });
            (out, reader)
        };
        let (stdout, out_reader) = collect(Box::new(child.stdout.take().expect("stdout pipe")));
        let (stderr, err_reader) = collect(Box::new(child.stderr.take().expect("stderr pipe")));
        Tool {
            name: program.to_string(),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("write to {}: {e}", self.name));
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().expect("output lock")).into_owned()
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("output lock")).into_owned()
    }

    /// Waits until stdout contains `want`; panics with both outputs if it does not
    /// within [`TOOL_TIME`].
    fn wait_for_stdout(&self, want: &str) {
        let seen = wait_until(TOOL_TIME, || self.stdout_text().contains(want));
        assert!(
            seen,
            "{} did not print {want:?} within {TOOL_TIME:?}; stdout:\n{}\nstderr:\n{}",
            self.name,
            self.stdout_text(),
            self.stderr_text()
        );
    }

    /// Closes stdin and waits for the program to exit; panics with its output if it
    /// runs past [`TOOL_TIME`].
    fn finish(mut self) -> Finished {
        self.close_stdin();
        let deadline = Instant::now() + TOOL_TIME;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the tool") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {TOOL_TIME:?}; stdout:\n{}\nstderr:\n{}",
                self.name,
                self.stdout_text(),
                self.stderr_text()
            );
            thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Finished {
            status,
            stdout: self.stdout_text(),
            stderr: self.stderr_text(),
        }
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Finished {
    /// Panics with the output unless the program exited 0.
    fn success(self, what: &str) -> Finished {
        assert!(
            self.status.success(),
            "{what}: {}; stdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The words after `key` on each stdout line that starts with it.
    fn values(&self, key: &str) -> Vec<Vec<&str>> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .map(|rest| rest.split(' ').collect())
            .collect()
    }
}

/// Runs `program` with `stdin` as its whole input.
fn run(program: &str, args: &[&str], stdin: &[u8]) -> Finished {
    let mut tool = Tool::spawn(program, args);
    tool.write(stdin);
    tool.finish()
}

fn unhex(hex: &str) -> Vec<u8> {
    if hex == "-" {
        return Vec::new();
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex from the tool"))
        .collect()
}

/// The first PEM certificate in `text` (what `openssl s_client` prints as the server's).
fn first_pem_cert(text: &str) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(text.as_bytes())
        .next()
        .unwrap_or_else(|| panic!("no certificate in the output:\n{text}"))
        .expect("a PEM certificate")
}

/// clb with an HTTPS listener in front of `backend` and a certificate for each of
/// `a.example` (the default) and `b.example`.
fn two_names(backend: &Backend) -> TlsClb {
    TlsClb::https_sni(
        &[&["a.example"], &["b.example"]],
        &[backend.instance("zone-a")],
        &[],
    )
}

// ---------------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------------

/// What curl prints after each transfer: status, connections it opened for it.
const CURL_TRAILER: &str = "\n--curl-- %{http_code} %{num_connects}\n";

/// `curl` to `https://NAME:PORT{path}` for each path on one command line (so on one
/// connection when it can), resolving NAME to 127.0.0.1 and trusting only the test CA;
/// `extra` comes first.
fn curl(lb: &TlsClb, name: &str, paths: &[&str], extra: &[&str]) -> Finished {
    let port = lb.clb.port();
    let resolve = format!("{name}:{port}:127.0.0.1");
    let urls: Vec<String> = paths
        .iter()
        .map(|p| format!("https://{name}:{port}{p}"))
        .collect();
    let mut args = vec![
        "--silent",
        "--show-error",
        "--max-time",
        "15",
        "--cacert",
        &lb.certs.ca_file,
        "--resolve",
        &resolve,
        "--write-out",
        CURL_TRAILER,
    ];
    args.extend_from_slice(extra);
    args.extend(urls.iter().map(String::as_str));
    run("curl", &args, b"")
}

/// Splits curl's stdout into (body, status, connections opened) per transfer.
fn curl_transfers(out: &Finished) -> Vec<(String, u16, usize)> {
    let mut transfers = Vec::new();
    let mut rest = out.stdout.as_str();
    while let Some((body, after)) = rest.split_once("\n--curl-- ") {
        let (trailer, next) = after.split_once('\n').unwrap_or((after, ""));
        let mut words = trailer.split(' ');
        let status = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let connects = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        transfers.push((body.to_string(), status, connects));
        rest = next;
    }
    transfers
}

#[test]
fn curl_gets_over_one_connection_and_posts_a_body_with_sni_names_it_verifies() {
    let backend = Backend::echo(IP1, "i-1");
    let lb = two_names(&backend);
    let port = lb.clb.port();
    // Each name gets the certificate valid for it, or curl would refuse it; two GETs
    // on one command line share one keep-alive connection.
    for name in ["a.example", "b.example"] {
        let out = curl(&lb, name, &["/curl/1", "/curl/2"], &[]).success(name);
        let transfers = curl_transfers(&out);
        assert_eq!(transfers.len(), 2, "{name}: stdout:\n{}", out.stdout);
        for (i, (head, status, connects)) in transfers.iter().enumerate() {
            let path = format!("/curl/{}", i + 1);
            assert_eq!(*status, 200, "{name} {path}: {head}");
            assert!(
                head.starts_with(&format!("GET {path} HTTP/1.1\r\n")),
                "{name} {path}: the instance saw {head:?}"
            );
            for line in [
                format!("Host: {name}:{port}"),
                "X-Forwarded-Proto: https".to_string(),
                format!("X-Forwarded-Port: {port}"),
            ] {
                assert!(
                    head.contains(&line),
                    "{name} {path}: no {line:?} in {head:?}"
                );
            }
            assert!(head.contains("User-Agent: curl/"), "{head:?}");
            assert_eq!(*connects, 1 - i, "{name} {path}: connections opened");
        }
    }
    // A name no certificate covers gets the default (a.example's): curl refuses it.
    let out = curl(&lb, "c.example", &["/curl/refused"], &[]);
    assert_eq!(
        out.status.code(),
        Some(60),
        "curl must refuse a.example's certificate for c.example (exit 60); stderr: {}",
        out.stderr
    );
    // A POST with a 256 KiB body arrives whole.
    backend.set_behavior(Behavior::CountBody);
    let body = pattern(256 * 1024);
    let file = lb.certs.dir.write("body.bin", &body);
    let data = format!("@{file}");
    let out = curl(
        &lb,
        "b.example",
        &["/curl/post"],
        &[
            "--data-binary",
            &data,
            "--header",
            "Content-Type: application/octet-stream",
        ],
    )
    .success("POST");
    let transfers = curl_transfers(&out);
    let sent = hash_of(&[&body]);
    assert_eq!(
        transfers
            .iter()
            .map(|(b, s, _)| (b.as_str(), *s))
            .collect::<Vec<_>>(),
        [(upload_summary(&sent, &sent).as_str(), 200)],
        "the POST as the instance received it"
    );
    assert_eq!(backend.requests(), 5, "requests the instance saw");
}

// ---------------------------------------------------------------------------------
// openssl s_client
// ---------------------------------------------------------------------------------

/// `openssl s_client` to clb, trusting only the test CA and stopping on a failed
/// verification, with interactive commands off; `extra` comes last.
fn s_client(lb: &TlsClb, extra: &[&str]) -> Tool {
    let connect = lb.clb.addr.to_string();
    let mut args = vec![
        "s_client",
        "-connect",
        &connect,
        "-CAfile",
        &lb.certs.ca_file,
        "-verify_return_error",
        "-nocommands",
    ];
    args.extend_from_slice(extra);
    Tool::spawn("openssl", &args)
}

#[test]
fn openssl_s_client_gets_the_certificate_its_servername_names() {
    let backend = Backend::echo(IP1, "i-1");
    let lb = two_names(&backend);
    let (a, b) = (&lb.certs.leaves[0].der, &lb.certs.leaves[1].der);
    // Without -servername no SNI goes out: the first pair is the default.
    for (i, (name, sni, want)) in [
        ("b.example", vec!["-servername", "b.example"], b),
        ("a.example", vec!["-servername", "a.example"], a),
        ("a.example", vec!["-noservername"], a),
    ]
    .into_iter()
    .enumerate()
    {
        let mut args = sni.clone();
        // -ign_eof: send the request, then read until clb closes (Connection: close).
        args.extend_from_slice(&["-verify_hostname", name, "-ign_eof"]);
        let path = format!("/openssl/{i}");
        let mut tool = s_client(&lb, &args);
        tool.write(
            format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let out = tool.finish().success(&format!("s_client {sni:?}"));
        assert!(
            first_pem_cert(&out.stdout) == *want,
            "s_client {sni:?}: not the certificate for {name}; stdout:\n{}",
            out.stdout
        );
        for line in [
            "Verify return code: 0 (ok)",
            "HTTP/1.1 200 OK",
            &format!("GET {path} HTTP/1.1"),
        ] {
            assert!(
                out.stdout.contains(line),
                "s_client {sni:?}: no {line:?} in stdout:\n{}",
                out.stdout
            );
        }
    }
    assert_eq!(backend.requests(), 3, "requests the instance saw");
}

#[test]
fn openssl_s_client_echoes_through_an_ssl_listener_and_its_close_is_passed_on() {
    let backend = TcpBackend::echo(IP1, "i-echo");
    let lb = TlsClb::ssl(&[backend.instance("zone-a")], &[]);
    let line = "a line through openssl s_client\n";
    let mut tool = s_client(&lb, &["-servername", "localhost"]);
    tool.write(line.as_bytes());
    // Its stdout shows what came back from the instance, after the session's details.
    tool.wait_for_stdout(line);
    // End of input: s_client sends close_notify and exits.
    let out = tool.finish().success("s_client on the SSL listener");
    assert!(
        out.stdout.contains("Verify return code: 0 (ok)"),
        "stdout:\n{}",
        out.stdout
    );
    assert!(
        first_pem_cert(&out.stdout) == lb.certs.leaves[0].der,
        "the certificate"
    );
    let conn = finished_conn(&backend, line.as_bytes(), SOON);
    assert!(conn.eof && !conn.reset, "the client's close came as EOF");
    assert_eq!(conn.received, line.as_bytes(), "what the instance received");
}

// ---------------------------------------------------------------------------------
// Python's ssl module
// ---------------------------------------------------------------------------------

fn python_client(args: &[&str], stdin: &[u8]) -> Finished {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/python_client.py");
    let mut all = vec![script];
    all.extend_from_slice(args);
    run("python3", &all, stdin)
}

#[test]
fn python_ssl_makes_https_requests_on_one_connection_with_sni() {
    let backend = Backend::echo(IP1, "i-1");
    let lb = two_names(&backend);
    let port = lb.clb.port().to_string();
    let https = |requests: &[&str]| {
        let mut args = vec!["https", &port, "b.example", &lb.certs.ca_file];
        args.extend_from_slice(requests);
        python_client(&args, b"").success("python3 https")
    };
    let out = https(&["GET:/python/1", "GET:/python/2"]);
    assert_eq!(out.values("version"), [["TLSv1.3"]], "{}", out.stdout);
    let cert = &out.values("cert")[0][0];
    assert!(
        unhex(cert) == lb.certs.leaves[1].der.as_ref(),
        "not b.example's certificate"
    );
    let responses = out.values("response");
    assert_eq!(responses.len(), 2, "stdout:\n{}", out.stdout);
    for (i, words) in responses.iter().enumerate() {
        let head = String::from_utf8(unhex(words[2])).expect("UTF-8 head");
        let path = format!("/python/{}", i + 1);
        assert_eq!(words[0], "200", "{path}");
        assert!(
            head.starts_with(&format!("GET {path} HTTP/1.1\r\n")),
            "{path}: the instance saw {head:?}"
        );
        assert!(
            head.contains(&format!("Host: b.example:{port}\r\n")),
            "{head:?}"
        );
        assert!(head.contains("X-Forwarded-Proto: https\r\n"), "{head:?}");
    }
    assert_eq!(
        responses[0][1], responses[1][1],
        "both requests on one connection (the same local port)"
    );
    // A POST with a 256 KiB body arrives whole.
    backend.set_behavior(Behavior::CountBody);
    let out = https(&["POST:/python/post:262144"]);
    let sent = hash_of(&[&pattern(262144)]);
    let responses = out.values("response");
    assert_eq!(responses.len(), 1, "stdout:\n{}", out.stdout);
    assert_eq!(responses[0][0], "200");
    assert_eq!(
        String::from_utf8(unhex(responses[0][2])).expect("UTF-8"),
        upload_summary(&sent, &sent),
        "the POST as the instance received it"
    );
}

#[test]
fn python_ssl_echoes_through_an_ssl_listener_and_unwraps_cleanly() {
    let backend = TcpBackend::echo(IP1, "i-echo");
    let lb = TlsClb::ssl(&[backend.instance("zone-a")], &[]);
    let payload = pattern(64 * 1024);
    let port = lb.clb.port().to_string();
    let out = python_client(&["echo", &port, "localhost", &lb.certs.ca_file], &payload)
        .success("python3 echo");
    let echo = unhex(out.values("echo")[0][0]);
    assert!(
        echo == payload,
        "the echo: {}",
        first_difference(&echo, &payload)
    );
    // unwrap() sent close_notify and got clb's back: the half-close went to the
    // instance as EOF, and its own came back.
    assert!(
        out.stdout.lines().any(|l| l == "unwrapped"),
        "stdout:\n{}",
        out.stdout
    );
    let conn = finished_conn(&backend, &payload[..64], SOON);
    assert!(conn.eof && !conn.reset, "the client's close came as EOF");
    assert!(
        conn.received == payload,
        "what the instance received: {}",
        first_difference(&conn.received, &payload)
    );
}
