//! Surge queue and spillover (issue 8 item 2; spec §11): with `--max-backend-connections`
//! reached, requests (HTTP) and connections (TCP) wait in a bounded FIFO; past it they
//! spill over (503, or the connection closed) and `SpilloverCount` counts exactly those;
//! a queued request still obeys the idle timeout.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(10);

fn metric(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn requests_queue_for_room_and_spill_over_when_the_queue_is_full() {
    let slow = Backend::start(
        "127.0.0.2",
        "i-1",
        Behavior::Delay(Duration::from_millis(800)),
    );
    let clb = Clb::http_api(
        &[slow.instance("zone-a")],
        &[
            "--workers",
            "1",
            "--max-backend-connections",
            "1",
            "--surge-queue",
            "2",
        ],
        &[],
    );
    let (tx, rx) = mpsc::channel();
    let addr = clb.addr;
    // One at a time, so the order is known: 1 served, 2 queued, 2 spilled.
    let mut handles = Vec::new();
    for i in 0..5 {
        let tx = tx.clone();
        handles.push(thread::spawn(move || {
            let mut client = Client::connect(addr);
            client.set_read_timeout(SOON);
            let started = Instant::now();
            let status = client.request(&get(&format!("/r{i}"))).status;
            tx.send((i, status, started.elapsed())).unwrap();
        }));
        if i == 0 {
            assert!(wait_until(SOON, || slow.requests() == 1));
        } else {
            thread::sleep(Duration::from_millis(30));
        }
    }
    // While the first is being served, two wait.
    let text = scrape_metrics(clb.api_addr());
    assert_eq!(
        metric(&text, "clb_SurgeQueueLength{load_balancer=\"default\"}"),
        Some(2),
        "{text}"
    );
    drop(tx);
    let mut results: Vec<(usize, u16, Duration)> = rx.iter().collect();
    results.sort();
    for handle in handles {
        handle.join().unwrap();
    }
    let statuses: Vec<u16> = results.iter().map(|r| r.1).collect();
    assert_eq!(statuses, [200, 200, 200, 503, 503], "{results:?}");
    // Spilled requests are answered at once, queued ones after those ahead of them.
    assert!(results[3].2 < Duration::from_millis(500), "{results:?}");
    assert!(results[2].2 > Duration::from_millis(1200), "{results:?}");
    let text = scrape_metrics(clb.api_addr());
    assert_eq!(
        metric(&text, "clb_SpilloverCount{load_balancer=\"default\"}"),
        Some(2),
        "{text}"
    );
    assert_eq!(
        metric(&text, "clb_SurgeQueueLength{load_balancer=\"default\"}"),
        Some(0)
    );
    assert_eq!(slow.requests(), 3);
}

#[test]
fn a_queued_request_gets_503_at_the_idle_timeout() {
    let backend = Backend::echo("127.0.0.2", "i-1");
    let clb = Clb::http(
        &[backend.instance("zone-a")],
        &[
            "--workers",
            "1",
            "--max-backend-connections",
            "1",
            "--idle-timeout",
            "1",
        ],
    );
    // The instance's one slot is taken by an upload that trickles in, a byte every
    // 200 ms: never idle, never done while the queued request waits.
    let mut busy = TcpStream::connect(clb.addr).unwrap();
    busy.write_all(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n")
        .unwrap();
    let trickle = thread::spawn(move || {
        for _ in 0..20 {
            thread::sleep(Duration::from_millis(200));
            if busy.write_all(b"x").is_err() {
                break;
            }
        }
        busy
    });
    assert!(wait_until(SOON, || backend.accepted() >= 1));
    thread::sleep(Duration::from_millis(100));
    let mut queued = Client::connect(clb.addr);
    queued.set_read_timeout(SOON);
    let started = Instant::now();
    let answer = queued.request(&get("/waits"));
    let took = started.elapsed();
    assert_eq!(answer.status, 503);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let _ = trickle.join();
    assert_eq!(
        backend.requests(),
        1,
        "the queued request reached the instance"
    );
}

#[test]
fn tcp_connections_queue_and_spill_over_by_closing() {
    let backend = TcpBackend::start("127.0.0.2", "i-1", TcpBehavior::Echo);
    let clb = Clb::tcp(
        &[backend.instance("zone-a")],
        &[
            "--workers",
            "1",
            "--max-backend-connections",
            "1",
            "--surge-queue",
            "1",
        ],
    );
    let mut first = TcpStream::connect(clb.addr).unwrap();
    first.set_read_timeout(Some(SOON)).unwrap();
    first.write_all(b"one").unwrap();
    let mut buf = [0u8; 3];
    first.read_exact(&mut buf).unwrap();
    // The second waits in the queue; the third finds it full and is closed.
    let mut second = TcpStream::connect(clb.addr).unwrap();
    second.set_read_timeout(Some(SOON)).unwrap();
    second.write_all(b"two").unwrap();
    let mut third = TcpStream::connect(clb.addr).unwrap();
    third.set_read_timeout(Some(SOON)).unwrap();
    let mut rest = Vec::new();
    let _ = third.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // The first ends: the second gets its turn and its echo.
    first.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = first.read_to_end(&mut Vec::new());
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two");
}
