//! `--dns` (issue 13 item 4): clb answers DNS for its load balancers' names, checked
//! with `dig` over real UDP and TCP sockets: addresses, NXDOMAIN, the apex's SOA and
//! NS (with glue), REFUSED outside the domain, load balancers created and deleted
//! through the API appearing and disappearing, per-load-balancer pool addresses, and a
//! server that survives garbage.

mod common;

use common::address_pool::{self, clb_with_pool, pool_ip};
use common::dns::{addresses, create_lb, delete_lb, dig};
use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// How long a change made through the API may take to show in DNS (it is published
/// before the API answers, so this only absorbs a loaded machine).
const VISIBLE: Duration = Duration::from_secs(5);

/// clb with one HTTP listener on 127.0.0.1 (load balancer `front`), the API and the
/// DNS server on free ports of 127.0.0.1, then `extra`. Returns it and the DNS address.
fn clb_with_dns(extra: &[&str]) -> (Clb, SocketAddr) {
    let listener = format!("http:{}", free_port("127.0.0.1"));
    let api = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let dns: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("address");
    let dns_flag = dns.to_string();
    let mut args = vec![
        "--name",
        "Front",
        "--listener",
        &listener,
        "--bind",
        "127.0.0.1",
        "--api",
        &api,
        "--dns",
        &dns_flag,
    ];
    args.extend_from_slice(extra);
    let clb = Clb::start(&args);
    assert!(
        wait_until(VISIBLE, || dig(dns, "front.elb.localhost", "A", &[]).status
            != "NO ANSWER"),
        "the DNS server does not answer on {dns}"
    );
    (clb, dns)
}

#[test]
fn a_load_balancer_name_resolves_over_udp_and_tcp_in_any_case() {
    let (_clb, dns) = clb_with_dns(&[]);
    assert_eq!(addresses(dns, "front.elb.localhost"), ["127.0.0.1"]);
    assert_eq!(addresses(dns, "FRONT.Elb.LocalHost."), ["127.0.0.1"]);
    let a = dig(dns, "front.elb.localhost", "A", &[]);
    assert!(
        a.text.contains("flags: qr aa"),
        "not authoritative:\n{}",
        a.text
    );
    assert!(
        a.text.contains("\t60\tIN\tA\t127.0.0.1"),
        "TTL is not 60:\n{}",
        a.text
    );
    // Only A data: AAAA is NODATA, with the SOA for negative caching.
    let aaaa = dig(dns, "front.elb.localhost", "AAAA", &[]);
    assert_eq!(aaaa.status, "NOERROR", "{}", aaaa.text);
    assert!(aaaa.answers().is_empty(), "{}", aaaa.text);
    assert_eq!(aaaa.authority_types(), ["SOA"], "{}", aaaa.text);
}

#[test]
fn unknown_names_outside_names_and_the_apex() {
    let (_clb, dns) = clb_with_dns(&[]);
    let unknown = dig(dns, "nope.elb.localhost", "A", &[]);
    assert_eq!(unknown.status, "NXDOMAIN", "{}", unknown.text);
    assert_eq!(unknown.authority_types(), ["SOA"], "{}", unknown.text);
    let outside = dig(dns, "example.com", "A", &[]);
    assert_eq!(outside.status, "REFUSED", "{}", outside.text);
    let soa = dig(dns, "elb.localhost", "SOA", &["+tcp"]);
    assert_eq!(soa.status, "NOERROR", "{}", soa.text);
    let soa_data = soa.answers();
    assert!(
        soa_data.len() == 1
            && soa_data[0].starts_with("ns1.ns.elb.localhost. hostmaster.elb.localhost. "),
        "{}",
        soa.text
    );
    // NS at the apex with a glue record: what a parent zone's delegation points to.
    let ns = dig(dns, "elb.localhost", "NS", &[]);
    assert_eq!(ns.answers(), ["ns1.ns.elb.localhost."], "{}", ns.text);
    assert!(
        ns.additional().contains(&"127.0.0.1".to_string()),
        "no glue A record:\n{}",
        ns.text
    );
    assert_eq!(addresses(dns, "ns1.ns.elb.localhost"), ["127.0.0.1"]);
    let axfr = dig(dns, "elb.localhost", "AXFR", &[]);
    assert!(
        axfr.text.contains("Transfer failed"),
        "zone transfer not refused:\n{}",
        axfr.text
    );
    // Opcodes other than QUERY are not implemented.
    let status = dig(dns, "elb.localhost", "SOA", &["+opcode=status"]);
    assert_eq!(status.status, "NOTIMP", "{}", status.text);
}

#[test]
fn load_balancers_created_and_deleted_through_the_api_appear_and_disappear() {
    let (clb, dns) = clb_with_dns(&["--dns-domain", "LB.Example.Test."]);
    let api = clb.api.expect("--api");
    // The flags' load balancer answers under the configured domain, lower-cased.
    assert_eq!(addresses(dns, "front.lb.example.test"), ["127.0.0.1"]);
    let port = free_port("127.0.0.1");
    let name = create_lb(api, "Shop-1", port, "zone-a");
    assert_eq!(
        name, "shop-1.lb.example.test",
        "DNSName is the name DNS answers for"
    );
    assert!(
        wait_until(VISIBLE, || addresses(dns, &name) == ["127.0.0.1"]),
        "{name} does not resolve after CreateLoadBalancer"
    );
    delete_lb(api, "Shop-1");
    assert!(
        wait_until(VISIBLE, || dig(dns, &name, "A", &[]).status == "NXDOMAIN"),
        "{name} still resolves after DeleteLoadBalancer"
    );
    // The default domain is outside the configured one now.
    assert_eq!(dig(dns, "front.elb.localhost", "A", &[]).status, "REFUSED");
}

#[test]
fn with_an_address_pool_each_load_balancer_answers_its_own_address() {
    let block = "127.0.3.56/29";
    let dns: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("address");
    let dns_flag = dns.to_string();
    let clb = clb_with_pool(
        block,
        None,
        &[],
        &["--name", "pooled", "--dns", &dns_flag],
        &[],
    );
    let api = clb.api.expect("--api");
    let first = pool_ip(block, 0).to_string();
    assert_eq!(addresses(dns, "pooled.elb.localhost"), [first.as_str()]);
    // Both on port 80's stand-in: the same port, each on its own address.
    let port = free_port("127.0.0.1");
    let a = create_lb(api, "pool-a", port, "zone-a");
    let b = create_lb(api, "pool-b", port, "zone-a");
    let (ip_a, ip_b) = (addresses(dns, &a), addresses(dns, &b));
    assert_eq!(ip_a.len(), 1, "{a}: {ip_a:?}");
    assert_eq!(ip_b.len(), 1, "{b}: {ip_b:?}");
    assert_ne!(ip_a, ip_b, "two load balancers share an address");
    for ip in ip_a.iter().chain(&ip_b) {
        assert_ne!(
            ip, &first,
            "a new load balancer answers the flags' one's address"
        );
        let addr: SocketAddr = format!("{ip}:{port}").parse().expect("address");
        assert!(
            address_pool::listening_at(addr),
            "DNS says {ip} but nothing listens on {addr}"
        );
    }
}

#[test]
fn garbage_and_half_messages_do_not_stop_the_server() {
    let (_clb, dns) = clb_with_dns(&[]);
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let datagrams: [&[u8]; 6] = [
        b"",
        b"\x00",
        b"hello, not dns at all",
        &[0xff; 512],
        // A header claiming 65535 questions and nothing after it.
        &[0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0],
        // A name whose compression pointer points at itself.
        &[0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1],
    ];
    for d in datagrams {
        udp.send_to(d, dns).expect("send");
    }
    // A TCP client that sends half a message and stays, one that sends a length
    // prefix only and leaves, and one that sends garbage with a valid length.
    let mut half = TcpStream::connect(dns).expect("connect");
    half.write_all(&[0, 40, 0x12, 0x34, 0x01]).expect("write");
    let mut prefix_only = TcpStream::connect(dns).expect("connect");
    prefix_only.write_all(&[0x10]).expect("write");
    drop(prefix_only);
    let mut garbage = TcpStream::connect(dns).expect("connect");
    garbage.write_all(&[0, 5, 1, 2, 3, 4, 5]).expect("write");
    // The server still answers both transports while the half message hangs open.
    assert_eq!(addresses(dns, "front.elb.localhost"), ["127.0.0.1"]);
    let tcp = dig(dns, "nope.elb.localhost", "A", &["+tcp"]);
    assert_eq!(tcp.status, "NXDOMAIN", "{}", tcp.text);
    drop(half);
}
