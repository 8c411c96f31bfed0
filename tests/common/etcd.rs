//! A real etcd for tests: one member on free 127.0.0.1 ports with its own data
//! directory, started from Debian's `etcd-server` (`/usr/bin/etcd`), polled until it
//! answers, killed and its directory removed on drop. `stop` and `start` again keep the
//! ports and the data, as an operator restarting etcd would. `EtcdCluster`: three (or
//! any number of) members on 127.0.0.1 for the quorum tests.

use super::*;
use clb::cluster::etcd::Etcd;
use std::process::{Child, Command, Stdio};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct EtcdServer {
    child: Option<Child>,
    name: String,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// `--initial-cluster`: this member alone, or every member of an `EtcdCluster`.
    initial_cluster: String,
}

impl EtcdServer {
    pub fn start() -> EtcdServer {
        let client_port = free_port("127.0.0.1");
        let peer_port = free_port("127.0.0.1");
        let name = format!("t{client_port}");
        let dir =
            std::env::temp_dir().join(format!("clb-etcd-{}-{client_port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the etcd test directory");
        let initial_cluster = format!("{name}=http://127.0.0.1:{peer_port}");
        let mut server = EtcdServer {
            child: None,
            name,
            dir,
            client_port,
            peer_port,
            initial_cluster,
        };
        server.resume();
        server
    }

    /// `http://127.0.0.1:PORT`, as `--cluster` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client address, for a relay in front of it (`common::relay`).
    pub fn client_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    pub fn client(&self) -> Etcd {
        Etcd::new(&[self.endpoint()], Duration::from_secs(2)).expect("a valid endpoint")
    }

    /// Kills the member (SIGKILL: the harshest stop) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the member again on the same ports and data, and waits until it answers.
    pub fn resume(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "etcd is already running");
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("open the etcd log");
        let child = Command::new("etcd")
            .args(["--name", &self.name, "--data-dir"])
            .arg(self.dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.initial_cluster])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start etcd (Debian: apt-get install etcd-server)");
        self.child = Some(child);
    }

    fn wait_ready(&self) {
        let etcd =
            Etcd::new(&[self.endpoint()], Duration::from_millis(500)).expect("a valid endpoint");
        let ready = wait_until(READY_TIMEOUT, || etcd.range_prefix(b"/").is_ok());
        assert!(
            ready,
            "etcd did not answer within {READY_TIMEOUT:?}; log in {}",
            self.dir.display()
        );
    }

    /// Runs `etcdctl` against this member; its stdout, or a panic with its stderr.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(args)
            .output()
            .expect("run etcdctl (Debian: apt-get install etcd-client)");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Several etcd members forming one cluster (three for the quorum tests).
pub struct EtcdCluster {
    pub members: Vec<EtcdServer>,
}

impl EtcdCluster {
    pub fn start(n: usize) -> EtcdCluster {
        let mut members: Vec<EtcdServer> = (0..n)
            .map(|_| {
                let client_port = free_port("127.0.0.1");
                let peer_port = free_port("127.0.0.1");
                let dir = std::env::temp_dir()
                    .join(format!("clb-etcd-{}-{client_port}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("create the etcd test directory");
                EtcdServer {
                    child: None,
                    name: format!("t{client_port}"),
                    dir,
                    client_port,
                    peer_port,
                    initial_cluster: String::new(),
                }
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = initial_cluster.clone();
            m.spawn();
        }
        // No member answers before a quorum has formed: start them all, then wait.
        for m in &members {
            m.wait_ready();
        }
        EtcdCluster { members }
    }

    /// Every member's endpoint, comma-separated as `--cluster` takes them.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::endpoint).collect()
    }

    pub fn client(&self) -> Etcd {
        Etcd::new(&self.endpoints(), Duration::from_secs(2)).expect("valid endpoints")
    }
}
