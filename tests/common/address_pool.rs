//! Helpers for `--address-pool` tests: where the flags' load balancer listens, clb
//! started with a pool, the status page, which instance answers at an address, and a
//! start-up that must fail.
//!
//! Every test uses its own small block of 127.0.3.0/24 (all of 127.0.0.0/8 is bindable
//! on Linux loopback), so tests running in parallel never share an address.

use super::*;

/// The first address of a pool flag's first item, as clb hands it out (a CIDR block of
/// /30 or shorter starts at its first host address).
pub fn first_address(pool: Option<&str>) -> Result<IpAddr, String> {
    let first = pool.and_then(|p| p.split(',').next()).unwrap_or("");
    let (addr, prefix) = first.split_once('/').unwrap_or((first, "32"));
    let addr: std::net::Ipv4Addr = addr
        .trim()
        .parse()
        .map_err(|e| format!("--address-pool {first}: {e}"))?;
    let prefix: u32 = prefix.parse().map_err(|e| format!("{first}: {e}"))?;
    let offset = u32::from(prefix <= 30);
    Ok(IpAddr::V4((u32::from(addr) + offset).into()))
}

/// Address `n` (0-based) of a /29 or shorter block `base/29`'s host addresses.
pub fn pool_ip(block: &str, n: u32) -> IpAddr {
    let base: std::net::Ipv4Addr = block
        .split('/')
        .next()
        .and_then(|b| b.parse().ok())
        .expect("a block like 127.0.3.8/29");
    IpAddr::V4((u32::from(base) + 1 + n).into())
}

/// clb with the control API on a free port of 127.0.0.1, `--address-pool pool`, the
/// flags' HTTP listener on `port` (a free one if `None`) in front of `instances`,
/// `env`, then `extra`; returns once every instance expected healthy is InService.
pub fn clb_with_pool(
    pool: &str,
    port: Option<u16>,
    instances: &[Instance],
    extra: &[&str],
    env: &[(&str, &str)],
) -> Clb {
    let first = first_address(Some(pool)).expect("a valid pool").to_string();
    let mut last = String::new();
    for _ in 0..3 {
        let listener = format!("http:{}:http:80", port.unwrap_or_else(|| free_port(&first)));
        let api = SocketAddr::new(ip("127.0.0.1"), free_port("127.0.0.1")).to_string();
        let args = [
            "--listener",
            &listener,
            "--address-pool",
            pool,
            "--api",
            &api,
            "--health-check",
            DEFAULT_HEALTH_CHECK,
        ];
        match Clb::try_start_serving(&args, instances, extra, env) {
            Ok(clb) => return clb,
            Err(e) => last = e,
        }
    }
    panic!("clb did not start in 3 tries: {last}");
}

/// The status page's HTML (`GET /` on the API port).
pub fn status_page(api: SocketAddr) -> String {
    let mut conn = TcpStream::connect(api).expect("connect to the API");
    conn.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    conn.write_all(b"GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    text
}

/// The address the status page shows for load balancer `name`.
pub fn status_address(api: SocketAddr, name: &str) -> Option<String> {
    let page = status_page(api);
    let section = page.split(&format!("data-name=\"{name}\"")).nth(1)?;
    let rest = section.split("<span class=\"address\">").nth(1)?;
    rest.split('<').next().map(str::to_string)
}

/// Sends `n` requests to `addr`, each on its own connection; every one must get a 200.
/// Returns the instances that answered, sorted and deduplicated.
pub fn answered_at(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..n)
        .map(|i| {
            let r = Client::connect(addr).request(&get_close(&format!("/at/{i}")));
            assert_eq!(r.status, 200, "request {i} to {addr}: {}", r.status_line);
            r.instance().unwrap_or("?").to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether something accepts TCP connections at `addr`.
pub fn listening_at(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// clb refuses to start: exit status 1 and a last stderr line `clb: ...` naming every
/// string in `mentions`; returns that line.
pub fn assert_start_fails(args: &[&str], mentions: &[&str]) -> String {
    let r = run_clb(args);
    assert_eq!(
        r.status.code(),
        Some(1),
        "clb {args:?}: {} stderr {:?}",
        r.status,
        r.stderr
    );
    let last = r.stderr.lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("clb: "), "stderr: {:?}", r.stderr);
    for m in mentions {
        assert!(last.contains(m), "{last:?} does not mention {m:?}");
    }
    last
}
