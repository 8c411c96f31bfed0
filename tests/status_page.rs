//! The status page (issue 9 item 3): `GET /` on the API port, loaded by a real browser
//! (headless Chromium), shows each load balancer's instances with ELB's state, reason
//! and description; the test checks the rendered instance table and saves a screenshot.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(10);

fn fetch(api: SocketAddr, path: &str) -> (String, String) {
    let mut conn = TcpStream::connect(api).unwrap();
    conn.set_read_timeout(Some(SOON)).unwrap();
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    (head.to_string(), body.to_string())
}

fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name;
        }
    }
    panic!("headless Chromium is needed (Debian package `chromium`; .ci/run installs it)");
}

/// Runs headless Chromium on `url` with `args`; its stdout.
fn browse(url: &str, args: &[&str]) -> String {
    let profile = std::env::temp_dir().join(format!("clb-chromium-{}", std::process::id()));
    let out = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of each `<td>` of each row of the instance table in `dom`.
fn instance_rows(dom: &str) -> Vec<Vec<String>> {
    let Some(start) = dom.find("<table class=\"instances\">") else {
        return Vec::new();
    };
    let table = &dom[start..start + dom[start..].find("</table>").unwrap_or(0)];
    table
        .split("<tr>")
        .skip(2)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let text = cell.split_once('>').map_or("", |(_, t)| t);
                    text.split("</td>").next().unwrap_or("").to_string()
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_status_page_shows_instances_with_their_health_in_a_real_browser() {
    let ok = Backend::echo("127.0.0.2", "i-ok");
    let dead_addr: SocketAddr = format!("127.0.0.3:{}", free_port("127.0.0.3"))
        .parse()
        .unwrap();
    let dead = Instance::new("i-dead", dead_addr, "zone-b");
    let clb = Clb::http_api(&[ok.instance("zone-a"), dead], &["--name", "web-lb"], &[]);
    let mut client = Client::connect(clb.addr);
    assert_eq!(client.request(&get("/x")).status, 200);
    // The dead instance has failed its probes long enough to read as failed.
    assert!(wait_until(SOON, || {
        fetch(clb.api_addr(), "/").1.contains("i-dead")
    }));

    let (head, body) = fetch(clb.api_addr(), "/");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/html"), "{head}");
    assert!(!body.contains("<script") && !body.contains("http://") && !body.contains("https://"));

    let url = format!("http://{}/", clb.api_addr());
    let dom = browse(&url, &["--dump-dom"]);
    assert!(dom.contains("web-lb"), "{dom}");
    let rows = instance_rows(&dom);
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.first().map(String::as_str) == Some(id))
            .unwrap_or_else(|| panic!("no row for {id} in {rows:?}"))
            .clone()
    };
    let ok_row = row("i-ok");
    assert_eq!(ok_row[2], "zone-a");
    assert_eq!(ok_row[3], "InService");
    assert_eq!(ok_row[4], "N/A");
    let dead_row = row("i-dead");
    assert_eq!(dead_row[1], dead_addr.to_string());
    assert_eq!(dead_row[3], "OutOfService");
    assert!(dead_row[5].starts_with("Instance "), "{dead_row:?}");

    let shot: PathBuf = std::env::temp_dir().join("clb-status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,800",
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 1000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", shot.display());
}

/// The "Nodes" table: this node as `--node`, `--node-zone` and `--node-address` name it
/// (a fleet of one without `--cluster`; membership's list with it).
#[test]
fn the_status_page_lists_the_nodes() {
    let ok = Backend::echo("127.0.0.2", "i-ok");
    let clb = Clb::http_api(
        &[ok.instance("zone-a")],
        &[
            "--node",
            "edge-7",
            "--node-zone",
            "zone-b",
            "--node-address",
            "127.0.7.1",
        ],
        &[],
    );
    let (_, body) = fetch(clb.api_addr(), "/");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        body.contains(&format!(
            "<tr class=\"node\"><td>edge-7 (this node)</td><td>zone-b</td><td>127.0.7.1</td><td>{version}</td>"
        )),
        "{body}"
    );
}
