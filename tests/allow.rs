//! Source allow lists (issue 8 item 4): `--allow` admits 127.0.0.1 and refuses
//! 127.0.0.2 as a source, at accept (nothing is read, nothing reaches an instance), per
//! process or per listener port, and counts what it refused.

mod common;

use common::sources::answer;
use common::*;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(10);

/// A connection to `to` whose source address is `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(SOON)).unwrap();
    stream
}

#[test]
fn only_allowed_sources_are_served_and_the_rest_closed_at_accept() {
    let backend = Backend::echo("127.0.0.2", "i-1");
    let clb = Clb::http_api(
        &[backend.instance("zone-a")],
        &["--allow", "127.0.0.1/32"],
        &[],
    );
    let served = answer(connect_from("127.0.0.1", clb.addr));
    assert!(served.starts_with("HTTP/1.1 200"), "{served:?}");
    let before = backend.requests();
    for _ in 0..3 {
        let refused = answer(connect_from("127.0.0.2", clb.addr));
        assert_eq!(refused, "", "a refused source got an answer");
    }
    assert_eq!(backend.requests(), before);
    assert!(wait_until(SOON, || scrape_metrics(clb.api_addr())
        .contains("clb_connections_refused_by_allow_list 3")));
}

#[test]
fn a_rule_for_one_listener_port_leaves_the_others_open() {
    let backend = Backend::echo("127.0.0.2", "i-1");
    let other = free_port("127.0.0.1");
    let rule = format!("{other}=10.0.0.0/8");
    let listener = format!("http:{other}:http:80");
    let clb = Clb::http(
        &[backend.instance("zone-a")],
        &["--allow", &rule, "--listener", &listener],
    );
    // The first listener has no rule: every source is served.
    assert!(answer(connect_from("127.0.0.2", clb.addr)).starts_with("HTTP/1.1 200"));
    // The second admits only 10.0.0.0/8.
    let second: SocketAddr = format!("127.0.0.1:{other}").parse().unwrap();
    assert_eq!(answer(connect_from("127.0.0.1", second)), "");
}

#[test]
fn bad_rules_are_refused_at_start() {
    assert_refused(
        &["--listener", "http:80", "--allow", "10.0.0.0/40"],
        &["--allow", "0-32"],
    );
    assert_refused(
        &["--listener", "http:80", "--allow", "nope"],
        &["--allow", "IPv4 or IPv6"],
    );
}
