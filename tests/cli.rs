//! The command line (DESIGN §4): `--help`, `--version`, and one clear line with exit
//! code 2 for a bad flag.

mod common;

use common::free_port;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs clb with `args`; it must exit by itself within 10 s.
fn run(args: &[&str]) -> Run {
    let mut child = Command::new(common::clb_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clb");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for clb") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("clb {args:?} was still running after 10 s");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    Run {
        status,
        stdout,
        stderr,
    }
}

/// A valid HTTP listener on a free port, so only the flag under test is wrong.
fn valid_listener() -> String {
    format!("http:{}:http:80", free_port("127.0.0.1"))
}

/// clb exits 2 and prints exactly one line on stderr, `clb: ...`, naming every
/// string in `mentions`.
fn refused(args: &[&str], mentions: &[&str]) {
    let r = run(args);
    assert_eq!(
        r.status.code(),
        Some(2),
        "clb {args:?}: {} stderr {:?}",
        r.status,
        r.stderr
    );
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "clb {args:?} stderr: {:?}", r.stderr);
    assert!(lines[0].starts_with("clb: "), "stderr: {:?}", lines[0]);
    for m in mentions {
        assert!(
            lines[0].contains(m),
            "{:?} does not mention {m:?}",
            lines[0]
        );
    }
}

#[test]
fn help_lists_every_flag_and_exits_0() {
    let r = run(&["--help"]);
    assert_eq!(r.status.code(), Some(0), "stderr: {:?}", r.stderr);
    for flag in [
        "--listener",
        "--instance",
        "--zones",
        "--cross-zone",
        "--idle-timeout",
        "--bind",
        "--workers",
        "--max-connections",
        "--api",
        "--name",
        "--help",
        "--version",
    ] {
        assert!(r.stdout.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn version_prints_the_package_version_and_exits_0() {
    let r = run(&["--version"]);
    assert_eq!(r.status.code(), Some(0), "stderr: {:?}", r.stderr);
    assert!(
        r.stdout.contains(env!("CARGO_PKG_VERSION")),
        "stdout: {:?}",
        r.stdout
    );
}

#[test]
fn idle_timeout_of_0_is_refused() {
    let l = valid_listener();
    refused(
        &["--listener", &l, "--api", "off", "--idle-timeout", "0"],
        &["--idle-timeout", "0"],
    );
}

#[test]
fn cross_zone_other_than_on_or_off_is_refused() {
    let l = valid_listener();
    refused(
        &["--listener", &l, "--api", "off", "--cross-zone", "maybe"],
        &["--cross-zone", "maybe"],
    );
}

#[test]
fn listener_port_0_is_refused() {
    refused(
        &["--listener", "http:0", "--api", "off"],
        &["--listener", "http:0"],
    );
}

#[test]
fn non_numeric_workers_is_refused() {
    let l = valid_listener();
    refused(
        &["--listener", &l, "--api", "off", "--workers", "x"],
        &["--workers", "x"],
    );
}

#[test]
fn malformed_instance_is_refused() {
    let l = valid_listener();
    refused(
        &[
            "--listener",
            &l,
            "--api",
            "off",
            "--instance",
            "no-equals-sign",
        ],
        &["--instance", "no-equals-sign"],
    );
}

#[test]
fn unknown_flag_is_refused() {
    refused(&["--no-such-flag"], &["no-such-flag"]);
}
