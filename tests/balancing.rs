//! How an HTTP listener spreads requests over instances and reuses connections to
//! them: least outstanding requests (spec §4.2), zones (§4.3–4.4), the shared
//! keep-alive pool (§1.15), refused and dying instances (§4.7).

mod common;

use common::*;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn three_echoes() -> [Backend; 3] {
    [
        Backend::echo(IP1, "i-1"),
        Backend::echo(IP2, "i-2"),
        Backend::echo(IP3, "i-3"),
    ]
}

fn instances(backends: &[Backend], zones: &[&str]) -> Vec<Instance> {
    backends
        .iter()
        .zip(zones)
        .map(|(b, z)| b.instance(z))
        .collect()
}

#[test]
fn sequential_requests_on_one_connection_spread_evenly_over_three_instances() {
    let backends = three_echoes();
    let clb = Clb::http(
        &instances(&backends, &["zone-a", "zone-a", "zone-b"]),
        &["--workers", "2"],
    );
    let mut client = clb.connect();
    for i in 0..300 {
        assert_eq!(client.request(&get(&format!("/{i}"))).status, 200);
    }
    let counts: Vec<usize> = backends.iter().map(Backend::requests).collect();
    println!("requests per instance: {counts:?}");
    for (b, n) in backends.iter().zip(&counts) {
        assert!(
            (75..=126).contains(n),
            "{} got {n} of 300 requests ({counts:?})",
            b.name()
        );
    }
}

#[test]
fn concurrent_requests_go_to_the_instances_with_fewest_outstanding() {
    let backends = [
        Backend::start(IP1, "i-1", Behavior::Delay(Duration::from_millis(1500))),
        Backend::start(IP2, "i-2", Behavior::Delay(Duration::from_millis(1500))),
        Backend::start(IP3, "i-3", Behavior::Delay(Duration::from_millis(1500))),
    ];
    // One worker: outstanding counts are per worker.
    let clb = Clb::http(
        &instances(&backends, &["zone-a", "zone-a", "zone-a"]),
        &["--workers", "1"],
    );
    let mut clients: Vec<Client> = (0..3).map(|_| clb.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(get(&format!("/{i}")).as_bytes());
        // Each request must be outstanding at its instance before the next is sent.
        let want = i + 1;
        assert!(
            wait_until(Duration::from_secs(5), || backends
                .iter()
                .map(Backend::requests)
                .sum::<usize>()
                == want),
            "request {i} did not reach an instance"
        );
    }
    let mut answered: Vec<String> = clients
        .iter_mut()
        .map(|c| c.response().instance().unwrap_or("?").to_string())
        .collect();
    answered.sort();
    assert_eq!(answered, ["i-1", "i-2", "i-3"]);
}

#[test]
fn backend_keep_alive_pool_is_shared_by_client_connections() {
    let backends = Arc::new(three_echoes());
    let clb = Clb::http(
        &instances(&backends[..], &["zone-a", "zone-a", "zone-b"]),
        &["--workers", "2"],
    );
    let addr = clb.addr;
    let (clients, per_client) = (200, 10);
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                (0..per_client)
                    .filter(|i| client.request(&get(&format!("/{c}/{i}"))).status == 200)
                    .count()
            })
        })
        .collect();
    let ok: usize = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .sum();
    let requests: usize = backends.iter().map(Backend::requests).sum();
    let connections: usize = backends.iter().map(Backend::connections).sum();
    println!(
        "{requests} requests over {connections} backend connections: {:.1} requests per connection ({:?})",
        requests as f64 / connections.max(1) as f64,
        started.elapsed()
    );
    assert_eq!(ok, clients * per_client);
    assert_eq!(requests, clients * per_client);
    assert!(
        connections < 1000,
        "{connections} backend connections for {requests} requests"
    );
}

#[test]
fn pooled_connection_closed_by_the_instance_is_not_used() {
    let backend = Backend::start(IP1, "i-1", Behavior::EchoThenClose);
    let clb = Clb::http(&[backend.instance("zone-a")], &["--workers", "2"]);
    let mut client = clb.connect();
    for i in 0..20 {
        let r = client.request(&get(&format!("/{i}")));
        assert_eq!(r.status, 200, "request {i}: {}", r.status_line);
    }
}

#[test]
fn instance_connection_with_connection_close_is_not_reused() {
    let backend = Backend::start(
        IP1,
        "i-1",
        Behavior::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec(),
        ),
    );
    let clb = Clb::http(&[backend.instance("zone-a")], &["--workers", "1"]);
    for _ in 0..3 {
        let r = clb.connect().request(&get_close("/"));
        assert_eq!(r.body, b"ok");
    }
    assert_eq!(backend.requests(), 3);
    assert_eq!(
        backend.max_requests_per_connection(),
        1,
        "a connection the instance said to close was reused"
    );
    assert!(
        wait_until(Duration::from_secs(5), || backend.eofs() >= 3),
        "clb kept connections the instance said to close ({} closed)",
        backend.eofs()
    );
}

#[test]
fn refused_instance_is_skipped_without_client_errors() {
    let (a, c) = (Backend::echo(IP1, "i-1"), Backend::echo(IP3, "i-3"));
    let refused = Instance::new(
        "i-2",
        format!("{IP2}:{}", free_port(IP2)).parse().unwrap(),
        "zone-a",
    );
    let clb = Clb::http(
        &[a.instance("zone-a"), refused, c.instance("zone-a")],
        &["--workers", "2"],
    );
    for i in 0..30 {
        let r = clb.connect().request(&get(&format!("/new/{i}")));
        assert_eq!(r.status, 200, "request {i}: {}", r.status_line);
    }
    let mut client = clb.connect();
    for i in 0..30 {
        let r = client.request(&get(&format!("/same/{i}")));
        assert_eq!(r.status, 200, "request {i}: {}", r.status_line);
    }
    assert_eq!(a.requests() + c.requests(), 60);
}

#[test]
fn instance_killed_mid_response_closes_the_client_and_others_keep_serving() {
    let dying = Backend::start(IP1, "i-1", Behavior::PartialBody { die: true });
    let (b, c) = (Backend::echo(IP2, "i-2"), Backend::echo(IP3, "i-3"));
    let clb = Clb::http(
        &[
            dying.instance("zone-a"),
            b.instance("zone-a"),
            c.instance("zone-a"),
        ],
        &["--workers", "2"],
    );
    let mut cut = false;
    for _ in 0..12 {
        let mut client = clb.connect();
        client.set_read_timeout(Duration::from_secs(5));
        client.send(get("/").as_bytes());
        let asked = Instant::now();
        match client.read_response(false) {
            Ok(r) => assert_eq!(r.status, 200, "{}", r.status_line),
            Err(ReadError::Closed { .. }) => {
                assert!(asked.elapsed() < Duration::from_secs(5));
                cut = true;
                break;
            }
            Err(e) => panic!(
                "clb did not close the client connection after the instance closed \
                 mid-body (headers + 10 of 1000 bytes): {e:?}"
            ),
        }
    }
    assert!(cut, "no request reached the dying instance i-1");
    assert!(
        wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(
            dying.addr
        )
        .is_err()),
        "test instance i-1 did not die"
    );
    for i in 0..20 {
        let r = clb.connect().request(&get(&format!("/after/{i}")));
        assert_eq!(
            r.status, 200,
            "request {i} after the kill: {}",
            r.status_line
        );
        assert_ne!(r.instance(), Some("i-1"));
    }
}

/// 100 new connections, one request each; the requests each instance got.
fn split_of_100_connections(cross_zone: &str) -> Vec<usize> {
    let backends = three_echoes();
    let clb = Clb::http(
        &instances(&backends, &["zone-a", "zone-a", "zone-b"]),
        &["--workers", "1", "--cross-zone", cross_zone],
    );
    for i in 0..100 {
        let r = clb.connect().request(&get_close(&format!("/{i}")));
        assert_eq!(r.status, 200, "request {i}: {}", r.status_line);
    }
    let counts: Vec<usize> = backends.iter().map(Backend::requests).collect();
    println!("cross-zone {cross_zone}: requests per instance {counts:?}");
    counts
}

#[test]
fn without_cross_zone_each_zone_gets_half_of_the_connections() {
    let counts = split_of_100_connections("off");
    assert!((20..=30).contains(&counts[0]), "i-1 (zone-a): {counts:?}");
    assert!((20..=30).contains(&counts[1]), "i-2 (zone-a): {counts:?}");
    assert!((45..=55).contains(&counts[2]), "i-3 (zone-b): {counts:?}");
}

#[test]
fn with_cross_zone_each_instance_gets_a_third_of_the_requests() {
    let counts = split_of_100_connections("on");
    for (i, n) in counts.iter().enumerate() {
        assert!((25..=41).contains(n), "i-{}: {counts:?}", i + 1);
    }
}
