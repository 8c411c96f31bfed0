//! An API write in cluster mode waits for its etcd round trip on a thread of its own
//! (control/committer.rs) while its connection is parked, so what a client does around
//! it must still come out right: pipelined writes and a read between them are answered
//! in order, each read seeing exactly the writes before it; a client that half-closes
//! after its write still gets the answer; and a client that leaves before its answer
//! (during a partition, when the round trip is long) leaves nothing stuck: the writes
//! held behind it are answered, and so are later ones.

mod common;

use common::cluster::{query, start_node, start_node_on};
use common::etcd::EtcdServer;
use common::relay::Relay;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(20);

fn register_path(id: &str) -> String {
    format!(
        "/?Version=2012-06-01&Action=RegisterInstancesWithLoadBalancer&LoadBalancerName=default\
         &Instances.member.1.InstanceId={}",
        id.replace(':', "%3A")
    )
}

const DESCRIBE: &str =
    "/?Version=2012-06-01&Action=DescribeLoadBalancers&LoadBalancerNames.member.1=default";

/// Every response in `raw`, in order: (status, body).
fn responses(raw: &str) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some((head, after)) = rest.split_once("\r\n\r\n") {
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let body = after.get(..length).unwrap_or(after);
        out.push((status, body.to_string()));
        rest = after.get(length..).unwrap_or("");
    }
    out
}

/// A node started through a relay to etcd, and the relay cut: etcd falls silent, as in
/// a partition (the etcd server and the relay live as long as the test holds them).
fn node_cut_off_from_etcd() -> (EtcdServer, Relay, Clb) {
    let etcd = EtcdServer::start();
    let relay = Relay::start(etcd.client_addr());
    let node = start_node_on(&relay.endpoint(), 1, free_port("127.0.1.1"), &[]);
    relay.cut();
    (etcd, relay, node)
}

fn connect(api: SocketAddr) -> TcpStream {
    let conn = TcpStream::connect(api).expect("connect to the API");
    conn.set_read_timeout(Some(SOON)).expect("timeout");
    conn
}

#[test]
fn pipelined_writes_and_reads_are_answered_in_order_and_a_half_close_still_gets_its_answer() {
    let etcd = EtcdServer::start();
    let node = start_node(&etcd, 1, free_port("127.0.1.1"));
    let api = node.api.expect("the API");
    let mut conn = connect(api);
    let mut batch = get(&register_path("127.0.0.1:1001"));
    batch.push_str(&get(&register_path("127.0.0.1:1002")));
    batch.push_str(&get(DESCRIBE));
    batch.push_str(&get_close(&register_path("127.0.0.1:1003")));
    conn.write_all(batch.as_bytes()).expect("send the batch");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("read the answers");
    let answers = responses(&raw);
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200, 200], "{raw}");
    // The read between the writes sees the two before it and not the one after.
    let described = &answers[2].1;
    assert!(
        described.contains("127.0.0.1:1001") && described.contains("127.0.0.1:1002"),
        "{described}"
    );
    assert!(!described.contains("127.0.0.1:1003"), "{described}");
    assert!(answers[3].1.contains("127.0.0.1:1003"), "{}", answers[3].1);

    // A client that stops sending after its write still gets the answer.
    let mut conn = connect(api);
    conn.write_all(get(&register_path("127.0.0.1:1004")).as_bytes())
        .expect("send");
    conn.shutdown(Shutdown::Write).expect("half-close");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("read the answer");
    assert_eq!(responses(&raw).first().map(|r| r.0), Some(200), "{raw}");
    let (_, body) = query(api, &[("Action", "DescribeLoadBalancers")]).expect("a read");
    assert!(body.contains("127.0.0.1:1004"), "{body}");
}

#[test]
fn a_client_that_leaves_before_its_answer_leaves_nothing_stuck() {
    let (_etcd, relay, node) = node_cut_off_from_etcd();
    let api = node.api.expect("the API");
    // A write whose round trip now waits out etcd's silence; its client leaves at once.
    let mut gone = connect(api);
    gone.write_all(get(&register_path("127.0.0.1:2001")).as_bytes())
        .expect("send");
    std::thread::sleep(Duration::from_millis(100));
    drop(gone);
    // One held behind it, whose client waits.
    let held = std::thread::spawn(move || {
        let mut conn = connect(api);
        conn.write_all(get_close(&register_path("127.0.0.1:2002")).as_bytes())
            .expect("send");
        let mut raw = String::new();
        let _ = conn.read_to_string(&mut raw);
        responses(&raw).first().map(|r| r.0)
    });
    // Reads are answered meanwhile.
    let asked = Instant::now();
    let read = query(api, &[("Action", "DescribeLoadBalancers")]);
    assert!(
        read.as_ref().is_some_and(|(s, _)| *s == 200),
        "{read:?}\n{}",
        node.log_text()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    let held_status = held.join().expect("the held writer");
    assert_eq!(held_status, Some(503), "the held write is answered");
    relay.heal();
    let answered = wait_until(SOON, || {
        query(
            api,
            &[
                ("Action", "RegisterInstancesWithLoadBalancer"),
                ("LoadBalancerName", "default"),
                ("Instances.member.1.InstanceId", "127.0.0.1:2003"),
            ],
        )
        .is_some_and(|(s, _)| s == 200)
    });
    assert!(
        answered,
        "a write after the partition is answered:\n{}",
        node.log_text()
    );
}

/// Writes pile up behind one that waits out an unreachable etcd: past 64 held they are
/// throttled at once, and the held ones get the first one's 503 as soon as it comes,
/// rather than waiting out a round trip each (64 × 2 s).
#[test]
fn writes_held_behind_an_unreachable_etcd_are_answered_with_the_first_and_past_64_throttled() {
    let (_etcd, _relay, node) = node_cut_off_from_etcd();
    let api = node.api.expect("the API");
    let write = move |n: usize| {
        std::thread::spawn(move || {
            let asked = Instant::now();
            let answer = query(
                api,
                &[
                    ("Action", "RegisterInstancesWithLoadBalancer"),
                    ("LoadBalancerName", "default"),
                    (
                        "Instances.member.1.InstanceId",
                        &format!("127.0.0.1:{}", 3000 + n),
                    ),
                ],
            );
            (answer, asked.elapsed())
        })
    };
    let first = write(0);
    std::thread::sleep(Duration::from_millis(200));
    let rest: Vec<_> = (1..70).map(write).collect();
    let (first_answer, first_after) = first.join().expect("the first writer");
    assert_eq!(
        first_answer.as_ref().map(|a| a.0),
        Some(503),
        "{first_answer:?}"
    );
    let (mut refused, mut throttled, mut slowest) = (0, 0, Duration::ZERO);
    for writer in rest {
        let (answer, after) = writer.join().expect("a writer");
        slowest = slowest.max(after);
        match answer {
            Some((503, _)) => refused += 1,
            Some((400, body)) if body.contains("<Code>Throttling</Code>") => throttled += 1,
            other => panic!("a held write answered {other:?}"),
        }
    }
    eprintln!(
        "etcd cut off: the first write 503 after {first_after:?}; of 69 behind it {refused} \
         got its 503 and {throttled} were throttled, the slowest after {slowest:?}"
    );
    assert!(
        throttled >= 1 && refused >= 60,
        "{refused} refused, {throttled} throttled"
    );
    assert!(
        slowest < first_after + Duration::from_secs(1),
        "the held writes waited a round trip of their own: {slowest:?}"
    );
}
