//! Helpers for `--dns` tests: `dig` against clb's DNS server, and raw API calls that
//! create and delete load balancers (GET Query requests, no client library needed).

use super::*;

/// What `dig` printed and the status it reported.
pub struct Dig {
    pub status: String,
    pub text: String,
}

impl Dig {
    /// The answer section's data fields (addresses for A/AAAA), sorted.
    pub fn answers(&self) -> Vec<String> {
        section(&self.text, "ANSWER")
    }

    /// The authority section's record types (e.g. `["SOA"]`).
    pub fn authority_types(&self) -> Vec<String> {
        section_types(&self.text, "AUTHORITY")
    }

    pub fn additional(&self) -> Vec<String> {
        section(&self.text, "ADDITIONAL")
    }
}

/// `dig @server -p port name type [extra...]` with a short timeout and one try, so
/// a server that does not answer fails the test quickly.
pub fn dig(server: SocketAddr, name: &str, qtype: &str, extra: &[&str]) -> Dig {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), name, qtype])
        .args(["+time=2", "+tries=1", "+norecurse"])
        .args(extra)
        .output()
        .expect("run dig (Debian package bind9-dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("NO ANSWER")
        .to_string();
    Dig { status, text }
}

/// The A records of `name` over UDP and over TCP, which must agree.
pub fn addresses(server: SocketAddr, name: &str) -> Vec<String> {
    let udp = dig(server, name, "A", &[]);
    let tcp = dig(server, name, "A", &["+tcp"]);
    assert_eq!(
        udp.answers(),
        tcp.answers(),
        "UDP and TCP answers differ:\n{}\n{}",
        udp.text,
        tcp.text
    );
    udp.answers()
}

fn section_lines<'t>(text: &'t str, name: &str) -> impl Iterator<Item = Vec<&'t str>> + 't {
    let marker = format!(";; {name} SECTION:");
    text.split(&marker)
        .nth(1)
        .unwrap_or("")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
}

fn section(text: &str, name: &str) -> Vec<String> {
    let mut data: Vec<String> = section_lines(text, name)
        .filter_map(|f| f.get(4..).map(|rest| rest.join(" ")))
        .collect();
    data.sort();
    data
}

fn section_types(text: &str, name: &str) -> Vec<String> {
    section_lines(text, name)
        .filter_map(|f| f.get(3).map(|t| t.to_string()))
        .collect()
}

/// One API action as a GET Query request; returns the status code and the body.
pub fn api_get(api: SocketAddr, query: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(api).expect("connect to the API");
    conn.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    let request = format!(
        "GET /?{query}&Version=2012-06-01 HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).expect("write");
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// CreateLoadBalancer with one HTTP listener on `port` in `zone`; returns the DNSName
/// it answered.
pub fn create_lb(api: SocketAddr, name: &str, port: u16, zone: &str) -> String {
    let (status, body) = api_get(
        api,
        &format!(
            "Action=CreateLoadBalancer&LoadBalancerName={name}\
             &Listeners.member.1.Protocol=HTTP&Listeners.member.1.LoadBalancerPort={port}\
             &Listeners.member.1.InstancePort=80&AvailabilityZones.member.1={zone}"
        ),
    );
    assert_eq!(status, 200, "CreateLoadBalancer {name}: {body}");
    body.split("<DNSName>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_else(|| panic!("no DNSName in {body}"))
        .to_string()
}

pub fn delete_lb(api: SocketAddr, name: &str) {
    let (status, body) = api_get(
        api,
        &format!("Action=DeleteLoadBalancer&LoadBalancerName={name}"),
    );
    assert_eq!(status, 200, "DeleteLoadBalancer {name}: {body}");
}
