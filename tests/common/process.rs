//! The real `clb` binary under test: [`Clb`] starts it on free ports with a log file
//! (printed when the test panics) and kills it on drop; [`run_clb`] runs it to exit
//! for flag tests; [`Instance`] is one `--instance` flag.

use super::*;

static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running `clb`; dropping it kills the process.
pub struct Clb {
    child: Child,
    /// The HTTP listener clients connect to.
    pub addr: SocketAddr,
    /// The control API, when `--api` named an address (not `off`).
    pub api: Option<SocketAddr>,
    log: PathBuf,
    /// What clb was started with, so [`Clb::restart`] can start it again.
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The logs of the runs before the last [`Clb::restart`], printed on a panic too.
    earlier_logs: String,
}

impl Clb {
    /// Starts `clb` with exactly `args` and waits until the listener named by
    /// `--listener` (on `--bind`, default 127.0.0.1) accepts connections and the start
    /// is over (the "control API on/off" line).
    pub fn start(args: &[&str]) -> Clb {
        Clb::start_env(args, &[])
    }

    /// [`Clb::start`] with extra environment variables (e.g. [`HEALTH_TIME_UNIT_VAR`]).
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Clb {
        match Clb::try_start_env(args, env) {
            Ok(clb) => clb,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Clb::start`], but a process that exits before it listens is an `Err`
    /// carrying its log, so callers can retry (a free port taken in between).
    pub fn try_start(args: &[&str]) -> Result<Clb, String> {
        Clb::try_start_env(args, &[])
    }

    /// [`Clb::try_start`] with extra environment variables. The health time unit is
    /// never inherited from the test's own environment, only set from `env`.
    pub fn try_start_env(args: &[&str], env: &[(&str, &str)]) -> Result<Clb, String> {
        let port = flag_value(args, &["--listener", "-l"])
            .and_then(|spec| spec.split(':').nth(1))
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or("Clb::start needs --listener PROTO:PORT...")?;
        let bind: IpAddr = match flag_value(args, &["--bind"]) {
            // The flags' load balancer takes the pool's first address at a fresh start.
            _ if flag_value(args, &["--address-pool"]).is_some() => {
                address_pool::first_address(flag_value(args, &["--address-pool"]))?
            }
            Some("0.0.0.0") | None => ip("127.0.0.1"),
            Some(other) => other.parse().map_err(|e| format!("--bind {other}: {e}"))?,
        };
        let addr = SocketAddr::new(bind, port);
        let api = flag_value(args, &["--api"]).and_then(|a| a.parse::<SocketAddr>().ok());
        let log = std::env::temp_dir().join(format!(
            "clb-test-{}-{}-{port}.log",
            std::process::id(),
            LOG_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = File::create(&log).map_err(|e| format!("create {log:?}: {e}"))?;
        let stdout = stderr.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(clb_binary());
        command
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove(HEALTH_TIME_UNIT_VAR);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn clb: {e}"))?;
        let mut clb = Clb {
            child,
            addr,
            api,
            log,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            earlier_logs: String::new(),
        };
        let listening = |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(200));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = clb.child.try_wait() {
                let log = clb.log_text();
                return Err(format!(
                    "clb {args:?} exited ({status}) before listening on {addr}; log:\n{log}"
                ));
            }
            // Sockets are bound early in a start (a cluster node then still talks to
            // etcd): started is when main logs the control API line, after the start.
            if listening(&addr).is_ok()
                && api.as_ref().is_none_or(|a| listening(a).is_ok())
                && clb.log_text().contains("control API ")
            {
                return Ok(clb);
            }
            if Instant::now() >= deadline {
                let log = clb.log_text();
                return Err(format!(
                    "clb {args:?} did not listen on {addr} (and --api {api:?}) within {START_TIMEOUT:?}; log:\n{log}"
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// An HTTP listener on a free port of 127.0.0.1 in front of `instances`, with
    /// the control API off and `--health-check HTTP:80/clb-health` (what every
    /// [`Backend`] answers by default); `extra` is appended (`--workers`,
    /// `--idle-timeout`, its own `--health-check`, ...). Returns once every instance
    /// expected healthy ([`Instance::expect_healthy`]) has been logged InService, so
    /// no test races the first probe. Retries with another port if the one picked
    /// was taken before clb bound it.
    pub fn http(instances: &[Instance], extra: &[&str]) -> Clb {
        Clb::http_env(instances, extra, &[])
    }

    /// [`Clb::http`] with extra environment variables for clb.
    pub fn http_env(instances: &[Instance], extra: &[&str], env: &[(&str, &str)]) -> Clb {
        Clb::http_with(instances, extra, env, false)
    }

    /// [`Clb::http_env`] with the control API on a free port of 127.0.0.1
    /// ([`Clb::api`]) instead of `--api off`; returns once the API accepts connections
    /// too.
    pub fn http_api(instances: &[Instance], extra: &[&str], env: &[(&str, &str)]) -> Clb {
        Clb::http_with(instances, extra, env, true)
    }

    fn http_with(instances: &[Instance], extra: &[&str], env: &[(&str, &str)], api: bool) -> Clb {
        Clb::start_listener(
            &|port| format!("http:{port}:http:80"),
            "127.0.0.1",
            instances,
            extra,
            env,
            DEFAULT_HEALTH_CHECK,
            api,
        )
    }

    /// What [`Clb::http_with`] and [`Clb::listening`] share: the listener `listener(port)`
    /// on a free port of `bind`, the control API on a free port of `bind` when `api`
    /// (else `--api off`), each of `instances`, `default_check` unless `extra` has a
    /// `--health-check`, then `extra`. Returns once every instance expected healthy is
    /// logged InService; retries with other ports if one picked was taken before clb
    /// bound it.
    pub(super) fn start_listener(
        listener: &dyn Fn(u16) -> String,
        bind: &str,
        instances: &[Instance],
        extra: &[&str],
        env: &[(&str, &str)],
        default_check: &str,
        api: bool,
    ) -> Clb {
        let mut last = String::new();
        for _ in 0..3 {
            let spec = listener(free_port(bind));
            let api_addr = if api {
                SocketAddr::new(ip(bind), free_port(bind)).to_string()
            } else {
                "off".to_string()
            };
            let mut args = vec!["--listener", &spec, "--bind", bind, "--api", &api_addr];
            if !extra.contains(&"--health-check") {
                args.extend_from_slice(&["--health-check", default_check]);
            }
            match Clb::try_start_serving(&args, instances, extra, env) {
                Ok(clb) => return clb,
                Err(e) => last = e,
            }
        }
        panic!("clb did not start in 3 tries: {last}");
    }

    /// clb with `args`, each of `instances` as `--instance`, then `extra`; returns once
    /// every instance expected healthy is logged InService. `Err` when clb did not
    /// start (a port picked was taken meanwhile): the caller picks others and retries.
    pub(super) fn try_start_serving(
        args: &[&str],
        instances: &[Instance],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Clb, String> {
        let specs: Vec<String> = instances.iter().map(Instance::spec).collect();
        let mut all = args.to_vec();
        for spec in &specs {
            all.push("--instance");
            all.push(spec);
        }
        all.extend_from_slice(extra);
        let mut clb = Clb::try_start_env(&all, env)?;
        let expected: Vec<&Instance> = instances.iter().filter(|i| i.expect_healthy).collect();
        if let Err(e) = clb.wait_in_service(&expected, IN_SERVICE_TIMEOUT) {
            panic!("clb {all:?}: {e}");
        }
        Ok(clb)
    }

    /// Waits until every one of `instances` has been logged `-> InService` at least
    /// once; `Err` names the ones that were not (with the log) if clb exits or
    /// `within` passes first.
    pub fn wait_in_service(
        &mut self,
        instances: &[&Instance],
        within: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log_text();
            let missing: Vec<String> = instances
                .iter()
                .filter(|i| !log.lines().any(|l| i.is_transition(l, IN_SERVICE)))
                .map(|i| i.spec())
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "clb exited ({status}) before {missing:?} were InService; log:\n{log}"
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{missing:?} not logged InService within {within:?}; log:\n{log}"
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The lines of clb's log that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// Waits until at least `count` lines of clb's log contain `needle`.
    pub fn wait_for_log(&self, needle: &str, count: usize, within: Duration) -> bool {
        wait_until(within, || self.log_lines_with(needle).len() >= count)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGHUP to clb (it reloads its certificate files). Through kill(1) rather
    /// than libc, so the tests need no `unsafe`.
    pub fn hup(&self) {
        self.signal(libc::SIGHUP);
    }

    /// The control API's address; panics if clb was started with `--api off`.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.expect("clb was started without an --api address")
    }

    /// Kills clb with SIGKILL (no chance to clean up) and waits for it to be gone.
    pub fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills clb with SIGKILL and starts it again with the same flags and environment;
    /// returns once it listens again (the previous log is kept for a panic report).
    pub fn restart(&mut self) {
        self.kill_now();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut next = Clb::start_env(&args, &env);
        next.earlier_logs = format!(
            "{}----- clb log before restart ({:?}) -----\n{}\n",
            self.earlier_logs,
            self.log,
            self.log_text()
        );
        std::mem::swap(self, &mut next);
        // `next` now holds the dead process: its drop removes its log file.
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Everything clb wrote to stderr and stdout so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Peak resident set size (`VmHWM`) of the clb process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status of clb");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM line in /proc/PID/status")
    }

    /// Whether clb is still running (it must survive whatever a test sent it).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to clb.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({signal})");
    }

    /// Waits for clb to exit by itself; its status, or `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Clb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "{}----- clb log ({:?}) -----\n{}\n----- end of clb log -----",
                self.earlier_logs,
                self.log,
                self.log_text()
            );
        }
        let _ = fs::remove_file(&self.log);
    }
}

/// The binary under test: cargo's `clb`, or `$CLB_BIN` (e.g. a release build).
pub fn clb_binary() -> PathBuf {
    std::env::var_os("CLB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_clb")))
}

/// How a clb run that was expected to end by itself ended.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs clb with `args` (and no `RUST_LOG`); it must exit by itself within 10 s.
pub fn run_clb(args: &[&str]) -> Run {
    let child = Command::new(clb_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove(HEALTH_TIME_UNIT_VAR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clb");
    let (status, stdout, stderr) =
        wait_output(child, &format!("clb {args:?}"), Duration::from_secs(10));
    Run {
        status,
        stdout,
        stderr,
    }
}

/// Waits up to `within` for `child` to exit and returns its status, stdout and stderr.
/// Both pipes are drained meanwhile, so a chatty child cannot block on a full pipe; a
/// child still running at the deadline is killed and the test fails naming `what`.
pub fn wait_output(
    mut child: std::process::Child,
    what: &str,
    within: Duration,
) -> (std::process::ExitStatus, String, String) {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child process") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} was still running after {within:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// clb exits 2 and prints exactly one line on stderr, `clb: ...`, naming every
/// string in `mentions`; returns that line.
pub fn assert_refused(args: &[&str], mentions: &[&str]) -> String {
    let r = run_clb(args);
    assert_eq!(
        r.status.code(),
        Some(2),
        "clb {args:?}: {} stderr {:?}",
        r.status,
        r.stderr
    );
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "clb {args:?} stderr: {:?}", r.stderr);
    assert!(lines[0].starts_with("clb: "), "stderr: {:?}", lines[0]);
    for m in mentions {
        assert!(
            lines[0].contains(m),
            "{:?} does not mention {m:?}",
            lines[0]
        );
    }
    lines[0].to_string()
}

fn flag_value<'a>(args: &[&'a str], names: &[&str]) -> Option<&'a str> {
    args.windows(2)
        .find(|w| names.contains(&w[0]))
        .map(|w| w[1])
}

/// One `--instance ID=HOST:PORT@ZONE` flag.
pub struct Instance {
    pub id: String,
    pub addr: SocketAddr,
    pub zone: String,
    /// Whether [`Clb::http`] waits for this instance to be logged InService: true
    /// from [`Backend::instance`], false from [`Instance::new`] (refused or dead
    /// addresses).
    pub expect_healthy: bool,
}

impl Instance {
    /// An instance at an address no [`Backend`] serves: not expected healthy.
    pub fn new(id: &str, addr: SocketAddr, zone: &str) -> Instance {
        Instance {
            id: id.to_string(),
            addr,
            zone: zone.to_string(),
            expect_healthy: false,
        }
    }

    /// The same instance, with [`Instance::expect_healthy`] set to `healthy`.
    pub fn expecting_healthy(mut self, healthy: bool) -> Instance {
        self.expect_healthy = healthy;
        self
    }

    pub fn spec(&self) -> String {
        format!("{}={}@{}", self.id, self.addr, self.zone)
    }

    /// What clb's log says about this instance's transitions start with:
    /// `instance ID (IP:PORT) of `.
    pub fn log_prefix(&self) -> String {
        format!("instance {} ({}) of ", self.id, self.addr)
    }

    /// The exact text clb logs for a transition of this instance in load balancer
    /// `lb`: `instance ID (IP:PORT) of LB: OLD -> NEW: DESCRIPTION`.
    pub fn transition(&self, lb: &str, old: &str, new: &str, description: &str) -> String {
        format!("{}{lb}: {old} -> {new}: {description}", self.log_prefix())
    }

    /// Whether `line` logs a transition of this instance to `new` (any balancer).
    fn is_transition(&self, line: &str, new: &str) -> bool {
        line.split_once(&self.log_prefix())
            .is_some_and(|(_, rest)| rest.contains(&format!(" -> {new}: ")))
    }
}
