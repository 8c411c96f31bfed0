//! Several clb nodes sharing one etcd (`--cluster`): node N listens on 127.0.N.1 with
//! its API on a free port there, and the flags' load balancer on a port all nodes share
//! (as identically configured nodes would). Plus a plain-HTTP Query API call, for polls
//! that must be cheaper than a boto3 round trip.

use super::etcd::EtcdServer;
use super::*;

/// Health checks in units of 20 ms, as the API tests use.
pub const CLUSTER_ENV: &[(&str, &str)] = &[(HEALTH_TIME_UNIT_VAR, "20")];

pub fn node_ip(n: u8) -> String {
    format!("127.0.{n}.1")
}

/// Node `n` (1-based) of the cluster on `etcd`, its flags' load balancer on `port`.
pub fn start_node(etcd: &EtcdServer, n: u8, port: u16) -> Clb {
    start_node_with(etcd, n, port, &[])
}

/// `start_node` with more flags. Node N is named `nN` at 127.0.N.1 (`--node`,
/// `--node-address`): every node of a fleet needs its own name.
pub fn start_node_with(etcd: &EtcdServer, n: u8, port: u16, extra: &[&str]) -> Clb {
    start_node_on(&etcd.endpoint(), n, port, extra)
}

/// `start_node_with` on `--cluster ENDPOINTS` as given (several members: comma-separated).
pub fn start_node_on(endpoints: &str, n: u8, port: u16, extra: &[&str]) -> Clb {
    start_node_env(endpoints, n, port, extra, CLUSTER_ENV)
}

/// `start_node_on` with its own environment (e.g. another health time unit per node).
pub fn start_node_env(
    endpoints: &str,
    n: u8,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Clb {
    try_start_node_env(endpoints, n, port, extra, env).unwrap_or_else(|e| panic!("{e}"))
}

/// `start_node_env`, with a node that exits before it listens as an `Err` (its log).
pub fn try_start_node_env(
    endpoints: &str,
    n: u8,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Clb, String> {
    let ip = node_ip(n);
    let name = format!("n{n}");
    let api = format!("{ip}:{}", free_port(&ip));
    let listener = format!("http:{port}:http:80");
    let endpoint = endpoints.to_string();
    let mut args = vec![
        "--listener",
        &listener,
        "--api",
        &api,
        "--cluster",
        &endpoint,
        "--workers",
        "1",
        "--node",
        &name,
        "--node-address",
        &ip,
    ];
    // `--address-pool` (in `extra`) and `--bind` exclude each other.
    if !extra.contains(&"--address-pool") {
        args.extend(["--bind", ip.as_str()]);
    }
    args.extend_from_slice(extra);
    Clb::try_start_env(&args, env)
}

/// One unsigned Query API call as a GET (clb without --api-credentials takes it):
/// the status and body, or None when the API did not answer within 5 s.
pub fn query(api: SocketAddr, params: &[(&str, &str)]) -> Option<(u16, String)> {
    let mut path = String::from("/?Version=2012-06-01");
    for (k, v) in params {
        path.push_str(&format!("&{k}={}", v.replace(':', "%3A")));
    }
    let mut stream = TcpStream::connect_timeout(&api, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(get_close(&path).as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text))
}

/// Whether `GET /` through `addr` answers 200 from instance `name`.
pub fn serves(addr: SocketAddr, name: &str) -> bool {
    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        return false;
    }
    let r = Client::connect(addr).request(&get_close("/cluster"));
    r.status == 200 && r.instance() == Some(name)
}
