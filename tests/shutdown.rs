//! Graceful stop (issue 9 item 4): SIGTERM and SIGINT stop accepting at once, let the
//! requests in flight finish (up to the draining timeout) with `Connection: close`, then
//! exit 0; a second signal exits at once; without draining nothing is waited for.

mod common;

use common::*;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(10);

/// Connection attempts to `clb` are refused.
fn refuses(clb: &Clb) -> bool {
    TcpStream::connect_timeout(&clb.addr, Duration::from_millis(200)).is_err()
}

#[test]
fn sigterm_during_a_slow_request_lets_it_finish_then_exits_0() {
    let backend = Backend::start(
        "127.0.0.2",
        "i-1",
        Behavior::Delay(Duration::from_millis(1500)),
    );
    let mut clb = Clb::http(&[backend.instance("zone-a")], &["--draining", "30"]);
    let mut idle = Client::connect(clb.addr);
    let mut slow = Client::connect(clb.addr);
    slow.send(get("/slow").as_bytes());
    assert!(wait_until(SOON, || backend.requests() == 1));
    clb.signal(libc::SIGTERM);
    assert!(
        wait_until(SOON, || refuses(&clb)),
        "still accepting after SIGTERM"
    );
    // The idle keep-alive client is let go at once.
    assert!(idle.expect_closed(SOON).is_ok());
    let answer = slow.response();
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")),
        "{:?}",
        answer.headers
    );
    let status = clb.wait_exit(SOON).expect("clb still running");
    assert_eq!(status.code(), Some(0), "{}", clb.log_text());
}

#[test]
fn sigint_with_nothing_in_flight_exits_0_at_once() {
    let backend = Backend::echo("127.0.0.2", "i-1");
    let mut clb = Clb::http(&[backend.instance("zone-a")], &[]);
    let mut client = Client::connect(clb.addr);
    assert_eq!(client.request(&get("/a")).status, 200);
    let started = Instant::now();
    clb.signal(libc::SIGINT);
    let status = clb.wait_exit(SOON).expect("clb still running");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let backend = Backend::start("127.0.0.2", "i-1", Behavior::Silent);
    let mut clb = Clb::http(&[backend.instance("zone-a")], &["--draining", "300"]);
    let mut stuck = Client::connect(clb.addr);
    stuck.send(get("/never").as_bytes());
    assert!(wait_until(SOON, || backend.requests() == 1));
    clb.signal(libc::SIGTERM);
    assert!(wait_until(SOON, || refuses(&clb)));
    assert!(
        clb.wait_exit(Duration::from_millis(300)).is_none(),
        "did not wait for the request"
    );
    clb.signal(libc::SIGTERM);
    let status = clb
        .wait_exit(SOON)
        .expect("clb still running after the second signal");
    assert_eq!(status.code(), Some(1));
}

#[test]
fn without_draining_in_flight_requests_are_cut_and_clb_exits_0() {
    let backend = Backend::start("127.0.0.2", "i-1", Behavior::Silent);
    let mut clb = Clb::http(&[backend.instance("zone-a")], &["--draining", "off"]);
    let mut stuck = Client::connect(clb.addr);
    stuck.send(get("/never").as_bytes());
    assert!(wait_until(SOON, || backend.requests() == 1));
    let started = Instant::now();
    clb.signal(libc::SIGTERM);
    let status = clb.wait_exit(SOON).expect("clb still running");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(stuck.expect_closed(SOON).is_ok());
}
