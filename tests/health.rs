//! Health checks (spec §2, §3; issue 3): probes on a fixed schedule, one worker per
//! instance, HTTP and TCP success rules, the InService/OutOfService thresholds, the
//! transition log lines, 503 when nothing is InService, and the flags' ranges.
//!
//! Every test but the start-up one runs clb with `CLB_HEALTH_TIME_UNIT_MS=50`, so a
//! "second" of `--health-interval`/`--health-timeout` lasts 50 ms and each test takes
//! a few seconds.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The load balancer name clb logs when `--name` is not given.
const LB: &str = "default";
/// The test time unit: one "second" of the health flags.
const UNIT: Duration = Duration::from_millis(50);
const ENV: &[(&str, &str)] = &[(HEALTH_TIME_UNIT_VAR, "50")];
/// `--health-interval` of [`fast`]: 500 ms at the test unit.
const INTERVAL: u32 = 10;
/// Health flags for most tests: a probe every 500 ms, timing out after 200 ms, two
/// successes to come back, two failures to go out.
const FAST: [&str; 8] = [
    "--health-interval",
    "10",
    "--health-timeout",
    "4",
    "--healthy-threshold",
    "2",
    "--unhealthy-threshold",
    "2",
];
/// How long a test waits for something that takes a few intervals.
const WAIT: Duration = Duration::from_secs(10);

/// clb with the [`FAST`] health flags and the test time unit; `extra` is appended.
fn fast(instances: &[Instance], extra: &[&str]) -> Clb {
    let mut args = FAST.to_vec();
    args.extend_from_slice(extra);
    Clb::http_env(instances, &args, ENV)
}

fn interval() -> Duration {
    UNIT * INTERVAL
}

/// `n` requests, alternately on one keep-alive connection and on a new connection
/// each; every one must get a 200. How many each instance (`X-Instance`) answered.
fn answered_by(clb: &Clb, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut kept = clb.connect();
    for i in 0..n {
        let r = if i % 2 == 0 {
            kept.request(&get(&format!("/kept/{i}")))
        } else {
            clb.connect().request(&get_close(&format!("/new/{i}")))
        };
        assert_eq!(r.status, 200, "request {i}: {}", r.status_line);
        *counts
            .entry(r.instance().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    counts
}

/// The lines of clb's log that say `instance` went to `new`.
fn transitions_to(clb: &Clb, instance: &Instance, new: &str) -> Vec<String> {
    clb.log_lines_with(&instance.log_prefix())
        .into_iter()
        .filter(|l| l.contains(&format!(" -> {new}: ")))
        .collect()
}

/// How many of `backend`'s probes were answered with `status`.
fn answered(backend: &Backend, status: u16) -> usize {
    backend
        .probe_log()
        .iter()
        .filter(|p| p.answer == Some(status))
        .count()
}

/// How many probes `backend` answered with 200 since the last one it failed (500).
fn successes_since_last_failure(backend: &Backend) -> usize {
    backend
        .probe_log()
        .iter()
        .rev()
        .take_while(|p| p.answer != Some(500))
        .filter(|p| p.answer == Some(200))
        .count()
}

#[test]
fn fresh_clb_routes_to_an_instance_as_soon_as_its_first_probe_passes() {
    // Real time and default thresholds (interval 30 s, healthy threshold 10): only an
    // immediate first probe, and one success sufficing, let clb serve at once.
    let backend = Backend::echo(IP1, "i-1");
    let started = Instant::now();
    let clb = Clb::http(&[backend.instance("zone-a")], &["--workers", "2"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "InService after {took:?}");
    let line = backend
        .instance("zone-a")
        .transition(LB, OUT_OF_SERVICE, IN_SERVICE, DESC_NA);
    assert_eq!(clb.log_lines_with(&line).len(), 1, "{}", clb.log_text());
    assert_eq!(backend.probes(), 1, "one probe so far, from one worker");
    let r = clb.connect().request(&get("/"));
    assert_eq!(r.instance(), Some("i-1"));
}

#[test]
fn instance_failing_its_health_check_gets_no_traffic_until_it_passes_again() {
    let (flaky, steady) = (Backend::echo(IP1, "i-1"), Backend::echo(IP2, "i-2"));
    let flaky_instance = flaky.instance("zone-a");
    let clb = fast(
        &[flaky.instance("zone-a"), steady.instance("zone-a")],
        &["--workers", "2"],
    );
    let before = answered_by(&clb, 20);
    assert!(before.get("i-1").is_some_and(|&n| n > 0), "{before:?}");

    flaky.set_health(Health::Status(500));
    let out_line = flaky_instance.transition(LB, IN_SERVICE, OUT_OF_SERVICE, DESC_UNHEALTHY);
    assert!(
        clb.wait_for_log(&out_line, 1, WAIT),
        "no {out_line:?} after the health path turned 500"
    );
    let failures = answered(&flaky, 500);
    assert!(
        (2..=3).contains(&failures),
        "OutOfService after {failures} failed probes; the unhealthy threshold is 2"
    );
    let during = answered_by(&clb, 20);
    assert_eq!(
        during.get("i-1"),
        None,
        "an OutOfService instance got traffic: {during:?}"
    );

    flaky.set_health(Health::Ok);
    let in_line = flaky_instance.transition(LB, OUT_OF_SERVICE, IN_SERVICE, DESC_NA);
    assert!(
        clb.wait_for_log(&in_line, 2, WAIT),
        "no second {in_line:?} after the health path turned 200"
    );
    let successes = successes_since_last_failure(&flaky);
    assert!(
        (2..=3).contains(&successes),
        "InService again after {successes} passed probes; the healthy threshold is 2"
    );
    let after = answered_by(&clb, 20);
    assert!(
        after.get("i-1").is_some_and(|&n| n > 0),
        "i-1 got no traffic once InService again: {after:?}"
    );

    // Exactly one line per transition, and none for the steady instance but its first.
    assert_eq!(clb.log_lines_with(&out_line).len(), 1, "{}", clb.log_text());
    assert_eq!(clb.log_lines_with(&in_line).len(), 2, "{}", clb.log_text());
    let steady_instance = steady.instance("zone-a");
    let steady_transitions = transitions_to(&clb, &steady_instance, IN_SERVICE).len()
        + transitions_to(&clb, &steady_instance, OUT_OF_SERVICE).len();
    assert_eq!(steady_transitions, 1, "{}", clb.log_text());
}

#[test]
fn instance_that_never_answers_its_probe_never_gets_traffic() {
    let hung = Backend::echo(IP1, "i-1");
    hung.set_health(Health::Hang);
    let (b, c) = (Backend::echo(IP2, "i-2"), Backend::echo(IP3, "i-3"));
    let hung_instance = hung.instance("zone-a").expecting_healthy(false);
    let clb = fast(
        &[
            hung.instance("zone-a").expecting_healthy(false),
            b.instance("zone-a"),
            c.instance("zone-a"),
        ],
        &["--workers", "2"],
    );
    assert!(
        wait_until(WAIT, || hung.probes() >= 3),
        "{} probes reached the hung instance",
        hung.probes()
    );
    // Timeout path: clb gives up on each unanswered probe and closes it (200 ms),
    // long before the next one (500 ms).
    assert!(
        wait_until(WAIT, || hung.open_connections() == 0),
        "clb keeps {} unanswered probe connections open",
        hung.open_connections()
    );
    let counts = answered_by(&clb, 30);
    assert_eq!(counts.get("i-1"), None, "{counts:?}");
    assert_eq!(hung.requests(), 0);
    assert_eq!(
        transitions_to(&clb, &hung_instance, IN_SERVICE),
        Vec::<String>::new()
    );
}

#[test]
fn probe_timeouts_do_not_shift_the_schedule() {
    let hung = Backend::echo(IP1, "i-1");
    hung.set_health(Health::Hang);
    let _clb = fast(&[hung.instance("zone-a").expecting_healthy(false)], &[]);
    assert!(
        wait_until(WAIT, || hung.probes() >= 7),
        "{} probes reached the hung instance",
        hung.probes()
    );
    let at: Vec<Instant> = hung.probe_log().iter().map(|p| p.at).collect();
    let span = at[6] - at[1];
    let mean = span / 5;
    // A schedule shifted by each timeout would space probes 700 ms apart.
    assert!(
        mean > interval() * 85 / 100 && mean < interval() * 115 / 100,
        "probes {mean:?} apart on average; the interval is {:?}",
        interval()
    );
}

#[test]
fn non_200_success_status_fails_the_health_check() {
    let odd = Backend::echo(IP1, "i-1");
    odd.set_health(Health::Status(204));
    let other = Backend::echo(IP2, "i-2");
    let odd_instance = odd.instance("zone-a").expecting_healthy(false);
    let clb = fast(
        &[
            odd.instance("zone-a").expecting_healthy(false),
            other.instance("zone-a"),
        ],
        &["--workers", "2"],
    );
    assert!(
        wait_until(WAIT, || answered(&odd, 204) >= 3),
        "{} probes answered 204",
        answered(&odd, 204)
    );
    assert_eq!(
        transitions_to(&clb, &odd_instance, IN_SERVICE),
        Vec::<String>::new(),
        "204 counted as a passed health check"
    );
    let counts = answered_by(&clb, 20);
    assert_eq!(counts.get("i-1"), None, "{counts:?}");
    assert_eq!(odd.requests(), 0);
}

#[test]
fn refused_instance_never_gets_traffic_and_clients_see_no_error() {
    let (a, c) = (Backend::echo(IP1, "i-1"), Backend::echo(IP3, "i-3"));
    let refused = Instance::new(
        "i-2",
        format!("{IP2}:{}", free_port(IP2)).parse().unwrap(),
        "zone-a",
    );
    let refused_copy = Instance::new("i-2", refused.addr, "zone-a");
    let clb = fast(
        &[a.instance("zone-a"), refused, c.instance("zone-a")],
        &["--workers", "2"],
    );
    // Three rounds of probes: the refused instance was probed (and failed) too.
    assert!(
        wait_until(WAIT, || a.probes() >= 3 && c.probes() >= 3),
        "probes: i-1 {}, i-3 {}",
        a.probes(),
        c.probes()
    );
    assert_eq!(
        transitions_to(&clb, &refused_copy, IN_SERVICE),
        Vec::<String>::new()
    );
    let counts = answered_by(&clb, 30);
    assert_eq!(counts.values().sum::<usize>(), 30);
    assert_eq!(counts.get("i-2"), None, "{counts:?}");
    assert_eq!(a.requests() + c.requests(), 30);
}

#[test]
fn with_two_workers_each_instance_is_probed_once_per_interval() {
    let backends = [
        Backend::echo(IP1, "i-1"),
        Backend::echo(IP2, "i-2"),
        Backend::echo(IP3, "i-3"),
    ];
    let instances: Vec<Instance> = backends.iter().map(|b| b.instance("zone-a")).collect();
    // A probe every 250 ms.
    let interval = UNIT * 5;
    let _clb = Clb::http_env(
        &instances,
        &[
            "--workers",
            "2",
            "--health-interval",
            "5",
            "--health-timeout",
            "2",
        ],
        ENV,
    );
    // Count each instance's probes over 10 intervals, from half an interval after its
    // first probe: 10 on the schedule (±1 at the edges), 20 if both workers probed.
    const WINDOW: u32 = 10;
    let window_done = |b: &Backend| {
        b.probe_log()
            .first()
            .is_some_and(|p| p.at.elapsed() > interval * (WINDOW + 1))
    };
    assert!(
        wait_until(WAIT, || backends.iter().all(window_done)),
        "no first probe at some instance"
    );
    for b in &backends {
        let log = b.probe_log();
        let start = log[0].at + interval / 2;
        let end = start + interval * WINDOW;
        let n = log.iter().filter(|p| p.at >= start && p.at < end).count();
        println!("{}: {n} probes in {WINDOW} intervals", b.name());
        assert!(
            (WINDOW as usize - 1..=WINDOW as usize + 1).contains(&n),
            "{}: {n} probes in {WINDOW} intervals of {interval:?}",
            b.name()
        );
        assert_eq!(
            b.probe_connections(),
            b.probes(),
            "one connection per probe"
        );
    }
}

#[test]
fn all_instances_out_of_service_gets_503() {
    let backends = [Backend::echo(IP1, "i-1"), Backend::echo(IP2, "i-2")];
    let instances: Vec<Instance> = backends.iter().map(|b| b.instance("zone-a")).collect();
    let clb = fast(&instances, &["--workers", "2"]);
    assert_eq!(answered_by(&clb, 4).values().sum::<usize>(), 4);
    let served = backends.iter().map(Backend::requests).sum::<usize>();
    for b in &backends {
        b.set_health(Health::Status(500));
    }
    for i in &instances {
        let line = i.transition(LB, IN_SERVICE, OUT_OF_SERVICE, DESC_UNHEALTHY);
        assert!(clb.wait_for_log(&line, 1, WAIT), "no {line:?}");
    }
    let mut client = clb.connect();
    for _ in 0..2 {
        let r = client.request(&get("/"));
        assert_canned(
            &r,
            "HTTP/1.1 503 Service Unavailable: Back-end server is at capacity",
        );
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
            "503 keeps the connection: {:?}",
            r.header("connection")
        );
    }
    assert_eq!(
        backends.iter().map(Backend::requests).sum::<usize>(),
        served,
        "a request reached an OutOfService instance"
    );
}

#[test]
fn http_probe_is_a_get_with_host_and_the_elb_user_agent_on_the_instance_port() {
    let backend = Backend::echo(IP1, "i-1");
    backend.set_health_path("/health/ping.html");
    // The target names port 80; the instance's own port wins.
    let clb = Clb::http_env(
        &[backend.instance("zone-a")],
        &["--health-check", "HTTP:80/health/ping.html"],
        ENV,
    );
    let heads = backend.probe_heads();
    assert!(!heads.is_empty(), "{}", clb.log_text());
    let head = String::from_utf8_lossy(&heads[0]).into_owned();
    let lines: Vec<&str> = head.trim_end_matches("\r\n").split("\r\n").collect();
    assert_eq!(lines[0], "GET /health/ping.html HTTP/1.1", "{head:?}");
    let host = format!("Host: {}", backend.addr);
    assert!(lines.contains(&host.as_str()), "no {host:?} in {head:?}");
    assert!(
        lines.contains(&"User-Agent: ELB-HealthChecker/1.0"),
        "{head:?}"
    );
    let expected = format!(
        "GET /health/ping.html HTTP/1.1\r\nHost: {}\r\nUser-Agent: ELB-HealthChecker/1.0\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        backend.addr
    );
    assert_eq!(head, expected);
    assert_eq!(backend.probe_connections(), backend.probes());
    assert_eq!(backend.requests(), 0, "a probe was counted as a request");
}

#[test]
fn tcp_target_makes_a_listening_instance_in_service() {
    let backend = Backend::echo(IP1, "i-1");
    let clb = Clb::http_env(
        &[backend.instance("zone-a")],
        &["--health-check", "TCP:80"],
        ENV,
    );
    assert_eq!(backend.probes(), 0, "a TCP probe sent an HTTP request");
    // The kernel completes the probe's handshake before the instance's thread accepts.
    assert!(
        wait_until(Duration::from_secs(5), || backend.accepted() >= 1),
        "no TCP probe reached the instance"
    );
    assert_eq!(backend.connections(), 0);
    let r = clb.connect().request(&get("/"));
    assert_eq!(r.instance(), Some("i-1"));
}

#[test]
fn request_in_flight_on_an_instance_that_turns_unhealthy_completes() {
    let slow = Duration::from_secs(4);
    let backend = Backend::start(IP1, "i-1", Behavior::Delay(slow));
    let instance = backend.instance("zone-a");
    let clb = fast(&[backend.instance("zone-a")], &["--workers", "1"]);
    let mut client = clb.connect();
    client.send(get("/slow").as_bytes());
    assert!(
        wait_until(WAIT, || backend.requests() == 1),
        "the request did not reach the instance"
    );
    let flipped = Instant::now();
    backend.set_health(Health::Status(500));
    let line = instance.transition(LB, IN_SERVICE, OUT_OF_SERVICE, DESC_UNHEALTHY);
    assert!(clb.wait_for_log(&line, 1, WAIT), "no {line:?}");
    assert!(
        flipped.elapsed() < slow,
        "OutOfService only after {:?}: the request was no longer in flight",
        flipped.elapsed()
    );
    // New requests find nothing InService...
    let r = clb.connect().request(&get("/new"));
    assert_canned(
        &r,
        "HTTP/1.1 503 Service Unavailable: Back-end server is at capacity",
    );
    // ...while the one in flight finishes normally.
    let r = client.response();
    assert_eq!(r.instance(), Some("i-1"));
    assert!(echoed(&r).starts_with("GET /slow HTTP/1.1\r\n"));
    assert_eq!(backend.requests(), 1);
}

// ---------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------

/// clb with a valid listener and `flags` exits 2 with one line naming `mentions`.
fn flag_refused(flags: &[&str], mentions: &[&str]) {
    let listener = format!("http:{}:http:80", free_port("127.0.0.1"));
    let mut args = vec!["--listener", &listener, "--api", "off"];
    args.extend_from_slice(flags);
    assert_refused(&args, mentions);
}

#[test]
fn health_interval_below_5_is_refused() {
    flag_refused(&["--health-interval", "4"], &["--health-interval", "4"]);
}

#[test]
fn health_timeout_above_60_is_refused() {
    flag_refused(
        &["--health-interval", "300", "--health-timeout", "61"],
        &["--health-timeout", "61"],
    );
}

#[test]
fn health_timeout_not_less_than_the_interval_is_refused() {
    flag_refused(
        &["--health-interval", "5", "--health-timeout", "5"],
        &["--health-timeout"],
    );
}

#[test]
fn healthy_threshold_above_10_is_refused() {
    flag_refused(
        &["--healthy-threshold", "11"],
        &["--healthy-threshold", "11"],
    );
}

#[test]
fn unhealthy_threshold_below_2_is_refused() {
    flag_refused(
        &["--unhealthy-threshold", "1"],
        &["--unhealthy-threshold", "1"],
    );
}

#[test]
fn http_target_without_a_path_is_refused() {
    flag_refused(
        &["--health-check", "HTTP:80"],
        &["--health-check", "HTTP:80"],
    );
}

#[test]
fn unknown_target_protocol_is_refused() {
    flag_refused(&["--health-check", "FTP:21"], &["--health-check", "FTP:21"]);
}

#[test]
fn range_bounds_are_accepted() {
    let backend = Backend::echo(IP1, "i-1");
    for flags in [["5", "2", "2", "2"], ["300", "60", "10", "10"]] {
        let [interval, timeout, healthy, unhealthy] = flags;
        let clb = Clb::http_env(
            &[backend.instance("zone-a")],
            &[
                "--health-interval",
                interval,
                "--health-timeout",
                timeout,
                "--healthy-threshold",
                healthy,
                "--unhealthy-threshold",
                unhealthy,
            ],
            ENV,
        );
        assert_eq!(clb.connect().request(&get("/")).status, 200, "{flags:?}");
    }
}
