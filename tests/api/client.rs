//! The real AWS clients, driven from Rust: boto3 through `boto_driver.py` (one long-lived
//! Python process per [`Boto`], so a test pays for importing boto3 once) and the `aws`
//! CLI as one process per command ([`aws`]).
//!
//! Every call is bounded: botocore has connect and read timeouts, and the Rust side
//! gives up on an answer after [`ANSWER_TIMEOUT`].

use crate::common::wait_output;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

/// How long one boto3 call may take before the test fails (botocore's own read timeout
/// is 30 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(45);
/// How long one `aws` command may take.
const AWS_TIMEOUT: Duration = Duration::from_secs(60);
/// The dummy credentials every client signs with when clb has no `--api-credentials`.
pub const DUMMY_KEY: &str = "AKIDCLBTESTDUMMY";
pub const DUMMY_SECRET: &str = "clb-test-dummy-secret";

fn driver_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/boto_driver.py")
}

/// Environment that keeps a developer's own AWS configuration out of the clients.
fn isolate(command: &mut Command, key: &str, secret: &str) {
    command
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_PROFILE")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent/clb-test-aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/clb-test-aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_RETRY_MODE", "standard")
        .env("PYTHONDONTWRITEBYTECODE", "1");
}

/// A successful answer, flattened: `LoadBalancerDescriptions.0.LoadBalancerName`,
/// with `PATH.#` holding the length of every list.
#[derive(Clone, Debug)]
pub struct Reply(pub BTreeMap<String, String>);

impl Reply {
    /// The value at `path`; panics (showing the whole answer) if there is none.
    pub fn get(&self, path: &str) -> &str {
        self.opt(path)
            .unwrap_or_else(|| panic!("no {path:?} in the answer:\n{self}"))
    }

    pub fn opt(&self, path: &str) -> Option<&str> {
        self.0.get(path).map(String::as_str)
    }

    /// The length of the list at `path`; panics if the answer has no such list.
    pub fn len(&self, path: &str) -> usize {
        self.get(&format!("{path}.#"))
            .parse()
            .expect("list length is a number")
    }

    /// The items of a list of strings.
    pub fn strings(&self, path: &str) -> Vec<String> {
        (0..self.len(path))
            .map(|i| self.get(&format!("{path}.{i}")).to_string())
            .collect()
    }

    /// The items of a list of strings, sorted.
    pub fn sorted(&self, path: &str) -> Vec<String> {
        let mut items = self.strings(path);
        items.sort();
        items
    }

    /// `field` of every structure in the list at `path`, sorted.
    pub fn field_of_each(&self, path: &str, field: &str) -> Vec<String> {
        let mut items: Vec<String> = (0..self.len(path))
            .map(|i| self.get(&format!("{path}.{i}.{field}")).to_string())
            .collect();
        items.sort();
        items
    }

    /// The path of the structure in the list at `path` whose `field` is `value`.
    pub fn find(&self, path: &str, field: &str, value: &str) -> Option<String> {
        (0..self.len(path))
            .map(|i| format!("{path}.{i}"))
            .find(|item| self.opt(&format!("{item}.{field}")) == Some(value))
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, v) in &self.0 {
            writeln!(f, "  {k} = {v:?}")?;
        }
        Ok(())
    }
}

/// An error botocore raised as `ClientError`: what the server's error document said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiErr {
    pub code: String,
    pub status: u16,
    pub message: String,
}

/// What one boto3 call gave.
#[derive(Clone, Debug)]
pub enum Outcome {
    Ok(Reply),
    /// `ClientError`: the server answered with an error document botocore understood.
    Err(ApiErr),
    /// Anything else botocore raised (an answer it could not parse, a dropped
    /// connection), as `Type: message`.
    Exc(String),
}

/// One boto3 client process talking to one clb.
pub struct Boto {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    endpoint: String,
    /// `@creds=...`/`@unsigned=1` sent with every call of this handle.
    client_opts: Vec<(String, String)>,
}

impl Boto {
    /// A boto3 client for the API at `api`, signing with dummy credentials.
    pub fn new(api: SocketAddr) -> Boto {
        let endpoint = format!("http://{api}");
        let mut command = Command::new("python3");
        command
            .arg(driver_script())
            .env("CLB_API_ENDPOINT", &endpoint);
        isolate(&mut command, DUMMY_KEY, DUMMY_SECRET);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start python3 {:?}: {e}", driver_script()));
        let stdin = child.stdin.take().expect("driver stdin");
        let stdout = child.stdout.take().expect("driver stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Boto {
            child,
            stdin,
            lines,
            endpoint,
            client_opts: Vec::new(),
        }
    }

    /// From now on this handle signs with `key`/`secret`.
    pub fn sign_with(&mut self, key: &str, secret: &str) {
        self.client_opts = vec![("@creds".into(), format!("{key}:{secret}"))];
    }

    /// From now on this handle sends no signature at all.
    pub fn no_signature(&mut self) {
        self.client_opts = vec![("@unsigned".into(), "1".into())];
    }

    /// Calls `operation` (e.g. `CreateLoadBalancer`) with flat parameters
    /// (`Listeners.0.InstancePort` = `80`).
    pub fn call<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        operation: &str,
        params: &[(K, V)],
    ) -> Outcome {
        let mut line = operation.to_string();
        let opts = self
            .client_opts
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let given = params.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
        for (k, v) in opts.chain(given) {
            line.push('\t');
            line.push_str(k);
            line.push('=');
            line.push_str(&escape(v));
        }
        line.push('\n');
        if let Err(e) = self
            .stdin
            .write_all(line.as_bytes())
            .and_then(|_| self.stdin.flush())
        {
            panic!(
                "boto driver for {} is gone ({e}); its stderr is above",
                self.endpoint
            );
        }
        let answer = match self.lines.recv_timeout(ANSWER_TIMEOUT) {
            Ok(answer) => answer,
            Err(e) => panic!(
                "no answer from boto3 to {operation} at {} within {ANSWER_TIMEOUT:?} ({e})",
                self.endpoint
            ),
        };
        parse_answer(&answer)
    }

    /// Calls `operation` and returns its answer; panics with botocore's error otherwise.
    pub fn ok<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        operation: &str,
        params: &[(K, V)],
    ) -> Reply {
        match self.call(operation, params) {
            Outcome::Ok(reply) => reply,
            other => panic!("{operation} {} failed: {other:?}", show(params)),
        }
    }

    /// Calls `operation`, which must fail with an error document; returns the error.
    pub fn err<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        operation: &str,
        params: &[(K, V)],
    ) -> ApiErr {
        match self.call(operation, params) {
            Outcome::Err(e) => e,
            other => panic!("{operation} {} should have failed: {other:?}", show(params)),
        }
    }

    /// Calls `operation`, which must fail with `code` and HTTP `status`; returns the
    /// message.
    pub fn expect_err<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        operation: &str,
        params: &[(K, V)],
        code: &str,
        status: u16,
    ) -> String {
        let e = self.err(operation, params);
        assert_eq!(
            (e.code.as_str(), e.status),
            (code, status),
            "{operation} {}: expected {code} ({status}), got {e:?}",
            show(params)
        );
        e.message
    }
}

impl Drop for Boto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn show<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let pairs: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", k.as_ref(), v.as_ref()))
        .collect();
    format!("[{}]", pairs.join(", "))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn parse_answer(answer: &str) -> Outcome {
    let mut fields = answer.split('\t');
    match fields.next() {
        Some("OK") => Outcome::Ok(Reply(
            fields
                .map(|f| {
                    let (k, v) = f.split_once('=').unwrap_or((f, ""));
                    (k.to_string(), unescape(v))
                })
                .collect(),
        )),
        Some("ERR") => {
            let code = unescape(fields.next().unwrap_or(""));
            let status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let message = unescape(fields.next().unwrap_or(""));
            Outcome::Err(ApiErr {
                code,
                status,
                message,
            })
        }
        _ => Outcome::Exc(unescape(answer.strip_prefix("EXC\t").unwrap_or(answer))),
    }
}

/// How one `aws` command ended.
#[derive(Debug)]
pub struct AwsRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl AwsRun {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `aws elb ARGS --endpoint-url http://API --region us-east-1` with dummy
/// credentials; it must end within [`AWS_TIMEOUT`].
pub fn aws(api: SocketAddr, args: &[&str]) -> AwsRun {
    aws_signed(api, args, DUMMY_KEY, DUMMY_SECRET)
}

/// [`aws`] signing with `key`/`secret`.
pub fn aws_signed(api: SocketAddr, args: &[&str], key: &str, secret: &str) -> AwsRun {
    let endpoint = format!("http://{api}");
    let mut command = Command::new("aws");
    command
        .arg("elb")
        .args(args)
        .args(["--endpoint-url", &endpoint, "--region", "us-east-1"]);
    isolate(&mut command, key, secret);
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run aws (is the aws CLI installed?): {e}"));
    let (status, stdout, stderr) = wait_output(child, &format!("aws elb {args:?}"), AWS_TIMEOUT);
    AwsRun {
        code: status.code(),
        stdout,
        stderr,
    }
}
