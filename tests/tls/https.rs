//! HTTPS listeners: what reaches the instance, what one session carries, which
//! certificate SNI picks, the self-signed default, clb's own 503 inside TLS, and 50
//! clients at once.

use crate::common::tls::*;
use crate::common::*;
use crate::*;
use rustls::pki_types::ServerName;
use rustls::version::{TLS12, TLS13};
use std::sync::{Arc, Barrier};
use std::thread;

#[test]
fn an_https_request_reaches_the_instance_as_http_with_forwarded_proto_and_port() {
    let backend = Backend::echo(IP1, "i-1");
    let lb = TlsClb::https(&[backend.instance("zone-a")], &[]);
    let mut client = lb.client();
    assert_eq!(client.presented(), lb.certs.leaves[0].der);
    assert_eq!(
        client.chain().len(),
        2,
        "the whole --cert chain (leaf and CA) is presented"
    );
    // Client values of the two headers are replaced, as on an HTTP listener.
    let r = client.request(
        "GET /hello?x=1 HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: http\r\n\
         X-Forwarded-Port: 80\r\nX-Test: kept\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_eq!(r.instance(), Some("i-1"));
    let seen = echoed(&r);
    assert!(
        seen.starts_with("GET /hello?x=1 HTTP/1.1\r\n"),
        "instance saw {seen:?}"
    );
    assert_eq!(
        echoed_values(&r, "x-forwarded-proto"),
        ["https"],
        "{seen:?}"
    );
    assert_eq!(
        echoed_values(&r, "x-forwarded-port"),
        [lb.clb.port().to_string()],
        "{seen:?}"
    );
    assert_eq!(
        echoed_values(&r, "x-forwarded-for"),
        ["127.0.0.1"],
        "{seen:?}"
    );
    assert_eq!(echoed_values(&r, "x-test"), ["kept"], "{seen:?}");
    // The body the client decrypted is the head the instance received, byte for byte:
    // plain HTTP on the instance side.
    let heads = backend.heads();
    assert_eq!(heads.len(), 1, "requests the instance saw: {heads:?}");
    assert_eq!(r.body, heads[0], "{}", first_difference(&r.body, &heads[0]));
}

#[test]
fn one_tls_session_carries_keep_alive_pipelined_and_1_mib_requests_both_ways() {
    let backend = Backend::echo(IP1, "i-1");
    let lb = TlsClb::https(&[backend.instance("zone-a")], &[]);
    let mut client = lb.client();
    for i in 0..3 {
        let r = client.request(&get(&format!("/keep/{i}")));
        assert!(
            echoed(&r).starts_with(&format!("GET /keep/{i} HTTP/1.1\r\n")),
            "request {i}: instance saw {:?}",
            echoed(&r)
        );
    }
    // Two requests in one write: two responses, in order.
    client.send(format!("{}{}", get("/pipe/a"), get("/pipe/b")).as_bytes());
    for path in ["/pipe/a", "/pipe/b"] {
        let r = client.response();
        assert!(
            echoed(&r).starts_with(&format!("GET {path} HTTP/1.1\r\n")),
            "pipelined {path}: instance saw {:?}",
            echoed(&r)
        );
    }
    // 1 MiB down.
    backend.set_behavior(Behavior::Fixed {
        len: MIB,
        chunk: None,
    });
    let r = client.request(&get("/big"));
    assert_eq!(r.status, 200, "{}", r.status_line);
    let want = pattern(MIB);
    assert!(
        r.body == want,
        "1 MiB download: {}",
        first_difference(&r.body, &want)
    );
    // 1 MiB up.
    backend.set_behavior(Behavior::CountBody);
    client.send(&with_body("POST", "/upload", &want));
    let r = client.response();
    assert_eq!(r.status, 200, "{}", r.status_line);
    let sent = hash_of(&[&want]);
    assert_eq!(r.body_text(), upload_summary(&sent, &sent), "1 MiB upload");
    // And the session is still good for more.
    backend.set_behavior(Behavior::Echo);
    let r = client.request(&get("/after"));
    assert!(echoed(&r).starts_with("GET /after HTTP/1.1\r\n"));
    assert_eq!(backend.requests(), 8, "requests the instance saw");
}

#[test]
fn sni_picks_the_certificate_and_the_first_pair_is_the_default() {
    let backend = Backend::echo(IP1, "i-1");
    let TlsClb { clb, certs } = TlsClb::https_sni(
        &[&["a.example"], &["b.example"]],
        &[backend.instance("zone-a")],
        &[],
    );
    let (a, b) = (&certs.leaves[0].der, &certs.leaves[1].der);
    // Names a certificate is valid for: fully verified against the CA.
    let verifying = certs.client();
    for (name, want, which) in [
        ("a.example", a, "A"),
        ("b.example", b, "B"),
        ("B.Example", b, "B (names match whatever their case)"),
    ] {
        let mut client = TlsClient::open(clb.addr, &verifying, name);
        assert!(
            client.presented() == *want,
            "SNI {name:?}: expected cert {which}"
        );
        let r = client.request(&get(&format!("/sni/{name}")));
        assert_eq!(r.status, 200, "SNI {name:?}: {}", r.status_line);
    }
    // An unknown name, and no SNI at all (rustls sends none for an IP address): the
    // first pair, which is valid for neither, so only the accept-anything client takes it.
    let any = accept_any_client(&[&TLS13, &TLS12]);
    for name in ["c.example", "127.0.0.1"] {
        let mut client = TlsClient::open(clb.addr, &any, name);
        assert!(
            client.presented() == *a,
            "{name:?}: expected the default cert A"
        );
        let r = client.request(&get("/default"));
        assert_eq!(r.status, 200, "{name:?}: {}", r.status_line);
    }
    let refused = TlsClient::try_open(clb.addr, &verifying, "c.example");
    assert!(
        refused.is_err(),
        "a verifying client must refuse cert A for c.example"
    );
}

#[test]
fn without_a_certificate_clb_presents_a_self_signed_one_for_localhost() {
    let backend = Backend::echo(IP1, "i-1");
    let clb = Clb::https(&[backend.instance("zone-a")], &["--workers", "2"]);
    assert!(
        clb.wait_for_log("self-signed", 1, SOON),
        "no self-signed warning in the log"
    );
    let any = accept_any_client(&[&TLS13, &TLS12]);
    let mut client = TlsClient::open(clb.addr, &any, "localhost");
    let r = client.request(&get("/self-signed"));
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_eq!(
        client.chain().len(),
        1,
        "a self-signed certificate has no chain"
    );
    let cert = client.presented();
    let parsed = webpki::EndEntityCert::try_from(&cert).expect("a parseable certificate");
    for (name, valid) in [
        ("localhost", true),
        ("127.0.0.1", true),
        ("example.com", false),
    ] {
        let subject = ServerName::try_from(name).expect("name");
        assert_eq!(
            parsed.verify_is_valid_for_subject_name(&subject).is_ok(),
            valid,
            "is the self-signed certificate valid for {name}?"
        );
    }
    // Self-signed: a client that trusts this one certificate verifies it for localhost.
    let pinned = client_trusting(&[&cert], &[&TLS13, &TLS12]);
    let mut again = TlsClient::open(clb.addr, &pinned, "localhost");
    assert!(
        again.presented() == cert,
        "the same certificate on every handshake"
    );
    assert_eq!(again.request(&get("/pinned")).status, 200);
    // SIGHUP has no files to reload: the same certificate stays.
    clb.hup();
    assert!(
        clb.wait_for_log("no --cert files to reload", 1, SOON),
        "SIGHUP without --cert"
    );
    assert!(
        TlsClient::open(clb.addr, &any, "localhost").presented() == cert,
        "the self-signed certificate changed"
    );
}

#[test]
fn an_https_listener_without_an_instance_answers_503_inside_tls() {
    let lb = TlsClb::https(&[], &[]);
    let mut client = lb.client();
    for _ in 0..2 {
        let r = client.request(&get("/"));
        assert_canned(
            &r,
            "HTTP/1.1 503 Service Unavailable: Back-end server is at capacity",
        );
    }
}

#[test]
fn fifty_concurrent_tls_clients_each_make_five_requests() {
    const CLIENTS: usize = 50;
    const REQUESTS: usize = 5;
    let backend = Backend::echo(IP1, "i-1");
    let lb = TlsClb::https(&[backend.instance("zone-a")], &[]);
    let config = lb.certs.client();
    let start = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (config, start, addr) = (Arc::clone(&config), Arc::clone(&start), lb.clb.addr);
            thread::spawn(move || -> Result<(), String> {
                start.wait();
                let mut client = TlsClient::try_open(addr, &config, "localhost")?;
                for i in 0..REQUESTS {
                    let path = format!("/client/{t}/{i}");
                    let r = client.try_request(&get(&path))?;
                    let want = format!("GET {path} HTTP/1.1\r\n");
                    if r.status != 200 || !r.body.starts_with(want.as_bytes()) {
                        return Err(format!("{path}: {} {:?}", r.status_line, preview(&r.body)));
                    }
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = threads
        .into_iter()
        .enumerate()
        .filter_map(|(t, h)| match h.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("client {t}: {e}")),
            Err(_) => Some(format!("client {t} panicked")),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(backend.requests(), CLIENTS * REQUESTS);
}
