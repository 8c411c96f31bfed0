//! Sticky sessions (issue 8 item 1; spec §7): the duration-based `AWSELB` cookie and its
//! `AWSELBCORS` companion, 100 requests with and without the cookie, a forged cookie
//! ignored, a sticky instance turning unhealthy, and the application-cookie policy with
//! its attribute copying and its two quirks.

mod common;

use common::*;
use std::collections::HashSet;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(10);
const ENV: &[(&str, &str)] = &[(HEALTH_TIME_UNIT_VAR, "50")];
const FAST_CHECKS: &[&str] = &[
    "--health-interval",
    "5",
    "--health-timeout",
    "2",
    "--unhealthy-threshold",
    "2",
    "--healthy-threshold",
    "2",
];

fn three() -> Vec<Backend> {
    ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .enumerate()
        .map(|(i, ip)| Backend::echo(ip, &format!("i-{}", i + 1)))
        .collect()
}

fn request_with(cookie: Option<&str>) -> String {
    match cookie {
        Some(c) => format!("GET /s HTTP/1.1\r\nHost: a\r\nCookie: {c}\r\n\r\n"),
        None => get("/s"),
    }
}

/// The `AWSELB=...` pair of a response's `Set-Cookie` headers, if any.
fn awselb(r: &Response) -> Option<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| v.strip_prefix("AWSELB=").map(|_| v.clone()))
}

fn set_cookies(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .collect()
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

#[test]
fn the_duration_cookie_pins_a_client_and_its_absence_spreads_requests() {
    let backends = three();
    let instances: Vec<Instance> = backends.iter().map(|b| b.instance("zone-a")).collect();
    let clb = Clb::http(&instances, &["--sticky", "lb:60"]);
    let mut client = Client::connect(clb.addr);
    let first = client.request(&request_with(None));
    let cookies = set_cookies(&first);
    let lb_cookie = awselb(&first).expect("an AWSELB cookie");
    assert!(lb_cookie.ends_with(";PATH=/;MAX-AGE=60"), "{cookies:?}");
    assert!(
        cookies.iter().any(|c| c.starts_with("AWSELBCORS=")
            && c.ends_with(";PATH=/;MAX-AGE=60;SECURE;SAMESITE=None")),
        "{cookies:?}"
    );
    assert_eq!(
        first.header("cache-control"),
        Some("no-cache=\"set-cookie\""),
        "{:?}",
        first.headers
    );
    let pinned = first.instance().unwrap().to_string();
    let pair = cookie_pair(&lb_cookie);
    let token = pair.strip_prefix("AWSELB=").unwrap();
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
    // 100 requests with the cookie: one instance, and no new cookie (never refreshed).
    for _ in 0..100 {
        let r = client.request(&request_with(Some(&pair)));
        assert_eq!(r.instance(), Some(pinned.as_str()));
        assert_eq!(awselb(&r), None, "the cookie was re-sent");
    }
    // 100 without: spread over the three, each answer with a cookie.
    let mut seen = HashSet::new();
    for _ in 0..100 {
        let r = client.request(&request_with(None));
        assert!(awselb(&r).is_some());
        seen.insert(r.instance().unwrap().to_string());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn a_forged_or_foreign_cookie_is_ignored() {
    let backends = three();
    let instances: Vec<Instance> = backends.iter().map(|b| b.instance("zone-a")).collect();
    let clb = Clb::http(&instances, &["--sticky", "lb"]);
    let mut client = Client::connect(clb.addr);
    let first = client.request(&request_with(None));
    // No period: a browser-session cookie, without MAX-AGE.
    let lb_cookie = awselb(&first).unwrap();
    assert!(!lb_cookie.contains("MAX-AGE"), "{lb_cookie}");
    let pair = cookie_pair(&lb_cookie);
    let mut forged = pair.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let mut seen = HashSet::new();
    for bad in [forged.as_str(), "AWSELB=00112233", "AWSELB=not-hex"] {
        for _ in 0..30 {
            let r = client.request(&request_with(Some(bad)));
            assert!(awselb(&r).is_some(), "an ignored cookie is replaced");
            seen.insert(r.instance().unwrap().to_string());
        }
    }
    assert_eq!(seen.len(), 3, "forged cookies steered requests: {seen:?}");
}

#[test]
fn an_unhealthy_sticky_instance_gives_way_to_a_new_one_and_a_new_cookie() {
    let backends = three();
    let instances: Vec<Instance> = backends.iter().map(|b| b.instance("zone-a")).collect();
    let mut extra = vec!["--sticky", "lb:300"];
    extra.extend_from_slice(FAST_CHECKS);
    let clb = Clb::http_env(&instances, &extra, ENV);
    let mut client = Client::connect(clb.addr);
    let first = client.request(&request_with(None));
    let pair = cookie_pair(&awselb(&first).unwrap());
    let pinned = first.instance().unwrap().to_string();
    let backend = backends.iter().find(|b| b.name() == pinned).unwrap();
    backend.set_health(Health::Status(500));
    assert!(
        wait_until(SOON, || {
            let r = client.request(&request_with(Some(&pair)));
            r.instance() != Some(pinned.as_str())
        }),
        "requests still go to the unhealthy instance"
    );
    let r = client.request(&request_with(Some(&pair)));
    assert_ne!(r.instance(), Some(pinned.as_str()));
    let fresh = cookie_pair(&awselb(&r).expect("a new cookie"));
    assert_ne!(fresh, pair);
    let now_pinned = r.instance().unwrap().to_string();
    for _ in 0..20 {
        let r = client.request(&request_with(Some(&fresh)));
        assert_eq!(r.instance(), Some(now_pinned.as_str()));
    }
}

#[test]
fn the_application_cookie_policy_follows_the_application() {
    let mk = |ip: &str, name: &str, set_cookie: &str| {
        let raw = format!(
            "HTTP/1.1 200 OK\r\nX-Instance: {name}\r\n{set_cookie}Content-Length: 2\r\n\r\nok"
        );
        Backend::start(ip, name, Behavior::Raw(raw.into_bytes()))
    };
    let a = mk(
        "127.0.0.2",
        "i-a",
        "Set-Cookie: JSESSIONID=s1; Path=/my_path; HttpOnly; Max-Age=120\r\n",
    );
    let b = mk(
        "127.0.0.3",
        "i-b",
        "Set-Cookie: JSESSIONID=s2; Path=/my_path; HttpOnly; Max-Age=120\r\n",
    );
    let clb = Clb::http(
        &[a.instance("zone-a"), b.instance("zone-a")],
        &["--sticky", "app:JSESSIONID"],
    );
    let mut client = Client::connect(clb.addr);
    let first = client.request(&request_with(None));
    let lb_cookie = awselb(&first).expect("the app set its cookie, so clb sets AWSELB");
    // Attributes copied from the app's cookie, the underscore in the path encoded.
    assert!(
        lb_cookie.ends_with(";Path=/my%5Fpath;HttpOnly;Max-Age=120"),
        "{lb_cookie}"
    );
    let pinned = first.instance().unwrap().to_string();
    let both = format!("{}; JSESSIONID=s", cookie_pair(&lb_cookie));
    for _ in 0..30 {
        let r = client.request(&request_with(Some(&both)));
        assert_eq!(r.instance(), Some(pinned.as_str()));
    }
    // Without the app cookie the AWSELB cookie alone does not pin (spec §7.9).
    let mut seen = HashSet::new();
    for _ in 0..30 {
        let r = client.request(&request_with(Some(&cookie_pair(&lb_cookie))));
        seen.insert(r.instance().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn an_application_set_cookie_ending_in_a_semicolon_is_ignored() {
    let raw = "HTTP/1.1 200 OK\r\nX-Instance: i-a\r\nSet-Cookie: JSESSIONID=s1; Path=/;\r\nContent-Length: 2\r\n\r\nok";
    let a = Backend::start("127.0.0.2", "i-a", Behavior::Raw(raw.as_bytes().to_vec()));
    let clb = Clb::http(&[a.instance("zone-a")], &["--sticky", "app:JSESSIONID"]);
    let mut client = Client::connect(clb.addr);
    let r = client.request(&request_with(None));
    assert_eq!(awselb(&r), None, "{:?}", r.headers);
}

#[test]
fn bad_policies_are_refused_at_start() {
    assert_refused(
        &["--listener", "http:80", "--sticky", "lb:0"],
        &["--sticky", "seconds"],
    );
    assert_refused(
        &["--listener", "http:80", "--sticky", "app:"],
        &["--sticky", "cookie name"],
    );
}
