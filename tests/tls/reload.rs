//! SIGHUP reloads the certificate files: new handshakes get the new certificate, open
//! sessions keep theirs, a file that does not load keeps the old ones; and reloads in
//! the middle of a steady load of keep-alive and new-connection clients fail no request.

use crate::common::tls::*;
use crate::common::*;
use crate::*;
use rustls::pki_types::CertificateDer;
use rustls::version::{TLS12, TLS13};
use rustls::ClientConfig;
use std::fs;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// A full handshake with `clb` for `localhost` and the certificate it presented.
fn presented_now(clb: &Clb, config: &Arc<ClientConfig>) -> CertificateDer<'static> {
    TlsClient::open(clb.addr, config, "localhost").presented()
}

/// Waits until `streak` handshakes in a row present `want` (every worker has taken the
/// new certificates: connections spread over the workers). `Err` lists what came.
fn wait_presenting(
    clb: &Clb,
    config: &Arc<ClientConfig>,
    want: &CertificateDer<'static>,
    streak: usize,
) -> Result<(), String> {
    let (mut run, mut seen) = (0, Vec::new());
    let done = wait_until(SOON, || {
        let got = presented_now(clb, config) == *want;
        seen.push(got);
        run = if got { run + 1 } else { 0 };
        run >= streak
    });
    if done {
        return Ok(());
    }
    Err(format!(
        "no {streak} handshakes in a row presented the expected certificate within {SOON:?}; \
         handshakes that did, in order: {seen:?}"
    ))
}

/// clb with an HTTPS listener and two workers in front of `backend`, serving `first`
/// from the files `site.pem` and `site.key` in `dir` (what SIGHUP reads again); returns
/// clb and the certificate file's path.
fn serving_files(dir: &TempDir, first: &Leaf, backend: &Backend) -> (Clb, String) {
    let (cert, key) = first.write_pair(dir, "site");
    let clb = Clb::https(
        &[backend.instance("zone-a")],
        &["--cert", &cert, "--key", &key, "--workers", "2"],
    );
    (clb, cert)
}

#[test]
fn sighup_reloads_certificates_and_a_bad_file_keeps_the_old_ones() {
    let dir = TempDir::new("reload");
    let ca = TestCa::new();
    let (a, b, c) = (
        ca.leaf(&["localhost"]),
        ca.leaf(&["localhost"]),
        ca.leaf(&["localhost"]),
    );
    let backend = Backend::echo(IP1, "i-1");
    let (clb, cert) = serving_files(&dir, &a, &backend);
    let config = ca.client(&[&TLS13, &TLS12]);
    let mut old = TlsClient::open(clb.addr, &config, "localhost");
    assert!(old.presented() == a.der, "cert A at start");
    assert_eq!(old.request(&get("/before")).status, 200);

    // New files, SIGHUP: new handshakes get B, the open session carries on.
    b.write_pair(&dir, "site");
    clb.hup();
    assert!(
        clb.wait_for_log("certificates reloaded", 1, SOON),
        "no 'certificates reloaded' after SIGHUP"
    );
    wait_presenting(&clb, &config, &b.der, 10).unwrap_or_else(|e| panic!("after reload: {e}"));
    let r = old.request(&get("/during"));
    assert!(
        echoed(&r).starts_with("GET /during HTTP/1.1\r\n"),
        "old session"
    );

    // A certificate file that is not PEM: not reloaded, B stays.
    fs::write(&cert, b"this is not a certificate\n").expect("overwrite the cert file");
    clb.hup();
    assert!(
        clb.wait_for_log("certificates not reloaded", 1, SOON),
        "no 'certificates not reloaded' after SIGHUP with a bad file"
    );
    for i in 0..10 {
        assert!(
            presented_now(&clb, &config) == b.der,
            "handshake {i} after a bad reload: not cert B"
        );
    }
    // A key that does not match the certificate: not reloaded either.
    fs::write(&cert, c.chain_pem.as_bytes()).expect("write cert C");
    clb.hup();
    assert!(
        clb.wait_for_log("certificates not reloaded", 2, SOON),
        "no second 'certificates not reloaded' (cert C with key B); log:\n{}",
        clb.log_text()
    );
    for i in 0..10 {
        assert!(
            presented_now(&clb, &config) == b.der,
            "handshake {i} after a mismatched key: not cert B"
        );
    }
    assert_eq!(
        clb.log_lines_with("certificates reloaded").len(),
        1,
        "only the first reload succeeded"
    );
    let r = old.request(&get("/end"));
    assert!(
        echoed(&r).starts_with("GET /end HTTP/1.1\r\n"),
        "old session at the end"
    );
    let mut clb = clb;
    assert!(clb.is_running(), "clb survived three SIGHUPs");
}

/// One [`Load`] client: what it is and what it did.
struct LoadClient {
    name: String,
    /// Keeps one session (opened again after a failure); otherwise opens a new session
    /// (a full handshake) for every request.
    keep_alive: bool,
    /// Requests answered as they should be.
    done: AtomicUsize,
    failed: AtomicUsize,
    /// What went wrong, in order (the first few).
    failures: Mutex<Vec<String>>,
    /// The certificate its latest handshake presented.
    presented: Mutex<Option<CertificateDer<'static>>>,
}

/// Client threads making HTTPS requests through clb without pause until stopped (or
/// dropped).
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<Arc<LoadClient>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, config: &Arc<ClientConfig>, keep_alive: usize, new: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let kinds = (0..keep_alive).map(|i| (format!("keep-{i}"), true));
        let clients: Vec<Arc<LoadClient>> = kinds
            .chain((0..new).map(|i| (format!("new-{i}"), false)))
            .map(|(name, keep_alive)| {
                Arc::new(LoadClient {
                    name,
                    keep_alive,
                    done: AtomicUsize::new(0),
                    failed: AtomicUsize::new(0),
                    failures: Mutex::new(Vec::new()),
                    presented: Mutex::new(None),
                })
            })
            .collect();
        let threads = clients
            .iter()
            .map(|client| {
                let (config, client, stop) =
                    (Arc::clone(config), Arc::clone(client), Arc::clone(&stop));
                thread::spawn(move || run_client(addr, &config, &client, &stop))
            })
            .collect();
        Load {
            stop,
            clients,
            threads,
        }
    }

    /// Waits until every client has made `more` requests beyond those it had made.
    fn wait_progress(&self, more: usize) {
        let from: Vec<usize> = self.counts();
        let moved = wait_until(SOON, || {
            self.counts().iter().zip(&from).all(|(n, f)| *n >= f + more)
        });
        assert!(
            moved,
            "not every client made {more} more requests within {SOON:?}: from {from:?} to {:?}; \
             failures: {:?}",
            self.counts(),
            self.failures()
        );
    }

    /// Requests each client has made, answered or not.
    fn counts(&self) -> Vec<usize> {
        self.clients
            .iter()
            .map(|c| c.done.load(Ordering::SeqCst) + c.failed.load(Ordering::SeqCst))
            .collect()
    }

    /// Every client's failures, with its name and how many it had in all.
    fn failures(&self) -> Vec<String> {
        let mut all = Vec::new();
        for client in &self.clients {
            let failed = client.failed.load(Ordering::SeqCst);
            if failed > 0 {
                let first = client.failures.lock().expect("failures lock").clone();
                all.push(format!(
                    "{}: {failed} failed, the first: {first:#?}",
                    client.name
                ));
            }
        }
        all
    }

    /// Stops every client and waits for it; returns the requests answered.
    fn stop(&mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            assert!(thread.join().is_ok(), "a client thread panicked");
        }
        self.clients
            .iter()
            .map(|c| c.done.load(Ordering::SeqCst))
            .sum()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One [`Load`] client's thread: requests `/NAME/N` until `stop`.
fn run_client(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    client: &LoadClient,
    stop: &AtomicBool,
) {
    let mut session: Option<TlsClient> = None;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let path = format!("/{}/{n}", client.name);
        n += 1;
        let result = (|| {
            if !client.keep_alive || session.is_none() {
                let opened = TlsClient::try_open(addr, config, "localhost")?;
                *client.presented.lock().expect("presented lock") = Some(opened.presented());
                session = Some(opened);
            }
            let open = session.as_mut().expect("a session, opened above");
            let r = open.try_request(&get(&path))?;
            let want = format!("GET {path} HTTP/1.1\r\n");
            if r.status != 200 || !r.body.starts_with(want.as_bytes()) {
                return Err(format!("{} {:?}", r.status_line, preview(&r.body)));
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                client.done.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                session = None;
                client.failed.fetch_add(1, Ordering::SeqCst);
                let mut failures = client.failures.lock().expect("failures lock");
                if failures.len() < 5 {
                    failures.push(format!("{path}: {e}"));
                }
            }
        }
    }
}

#[test]
fn sighup_under_load_fails_no_request_and_new_handshakes_get_the_new_certificate() {
    const RELOADS: usize = 5;
    let dir = TempDir::new("reload-load");
    let ca = TestCa::new();
    let first = ca.leaf(&["localhost"]);
    let backend = Backend::echo(IP1, "i-1");
    let (clb, _) = serving_files(&dir, &first, &backend);
    let config = ca.client(&[&TLS13, &TLS12]);
    let mut load = Load::start(clb.addr, &config, 3, 3);
    load.wait_progress(20);
    let mut latest = first.der.clone();
    for round in 1..=RELOADS {
        let next = ca.leaf(&["localhost"]);
        next.write_pair(&dir, "site");
        clb.hup();
        assert!(
            clb.wait_for_log("certificates reloaded", round, SOON),
            "reload {round}: no 'certificates reloaded' after SIGHUP"
        );
        wait_presenting(&clb, &config, &next.der, 10)
            .unwrap_or_else(|e| panic!("reload {round}: {e}"));
        // The load went on through the reload.
        load.wait_progress(20);
        latest = next.der;
    }
    let answered = load.stop();
    let failures = load.failures();
    assert!(
        failures.is_empty(),
        "requests failed across {RELOADS} reloads: {failures:#?}"
    );
    assert_eq!(
        backend.requests(),
        answered,
        "every request reached the instance once"
    );
    for client in &load.clients {
        let presented = client.presented.lock().expect("presented lock").clone();
        let (want, which) = match client.keep_alive {
            true => (&first.der, "first"),
            false => (&latest, "latest"),
        };
        assert!(
            presented.as_ref() == Some(want),
            "{}: its session presents the {which} certificate",
            client.name
        );
    }
    assert_eq!(
        clb.log_lines_with("certificates reloaded").len(),
        RELOADS,
        "every reload succeeded"
    );
}
