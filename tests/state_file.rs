//! The state file's end (issue 12): a file cut short, even exactly after a whole load
//! balancer, is refused at start with a clear error instead of loading the load
//! balancers before the cut; a file in the old format (no end line) still loads, with a
//! warning, and is rewritten in the new format at the next change.

mod common;

use common::load::api_call;
use common::*;
use std::path::PathBuf;
use std::time::Duration;

/// A directory of its own for one test's state files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("clb-state-end-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the state directory");
        Dir(dir)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("utf-8 path").to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn call(api: std::net::SocketAddr, query: &str) -> String {
    match api_call(api, query, Duration::from_secs(10)) {
        Ok((200, body)) => body,
        other => panic!("{query}: {other:?}"),
    }
}

fn create_second(api: std::net::SocketAddr) {
    let port = free_port("127.0.0.1");
    call(
        api,
        &format!(
            "Action=CreateLoadBalancer&LoadBalancerName=second&Listeners.member.1.Protocol=HTTP&Listeners.member.1.LoadBalancerPort={port}&Listeners.member.1.InstancePort=80&AvailabilityZones.member.1=zone-a"
        ),
    );
}

#[test]
fn a_state_file_cut_right_after_a_whole_load_balancer_is_refused_at_start() {
    let dir = Dir::new("cut");
    let state = dir.file("state");
    let backend = Backend::echo(IP1, "i-state");
    {
        let clb = Clb::http_api(&[backend.instance("zone-a")], &["--state", &state], &[]);
        create_second(clb.api.expect("the API is on"));
    }
    let text = std::fs::read_to_string(&state).expect("the state file was written");
    assert_eq!(
        text.matches("\nend\n").count(),
        2,
        "two load balancers:\n{text}"
    );
    // The copy a crash of the disk (or a careless copy) could leave: the first load
    // balancer whole, nothing after it.
    let cut_at = text.find("\nend\n").expect("an end line") + "\nend\n".len();
    let cut = dir.file("cut");
    std::fs::write(&cut, &text[..cut_at]).expect("write the cut copy");

    let listener = format!("http:{}:http:80", free_port("127.0.0.1"));
    let r = run_clb(&["--listener", &listener, "--api", "off", "--state", &cut]);
    assert!(
        !r.status.success(),
        "clb started from a cut state file: {r:?}",
        r = r.stderr
    );
    assert!(
        r.stderr.contains("cut short") && r.stderr.contains(&cut),
        "the error does not say the file was cut short: {:?}",
        r.stderr
    );
}

#[test]
fn a_format_1_state_file_loads_with_a_warning_and_is_rewritten_in_format_2() {
    let dir = Dir::new("v1");
    let state = dir.file("state");
    let port = free_port("127.0.0.1");
    std::fs::write(
        &state,
        format!(
            "clb-state 1\nlb old 0 internet-facing\nlistener HTTP {port} HTTP 80\nzone zone-a\nhealth TCP:80 30 5 10 2\nattributes false 60 false 300 defensive\nend\n"
        ),
    )
    .expect("write a format 1 file");
    let backend = Backend::echo(IP1, "i-state-v1");
    let clb = Clb::http_api(&[backend.instance("zone-a")], &["--state", &state], &[]);
    let api = clb.api.expect("the API is on");
    let described = call(
        api,
        "Action=DescribeLoadBalancers&LoadBalancerNames.member.1=old",
    );
    assert!(
        described.contains("<LoadBalancerName>old</LoadBalancerName>"),
        "{described}"
    );
    assert!(
        clb.wait_for_log("format 1", 1, Duration::from_secs(5)),
        "no warning about the old format; log:\n{}",
        clb.log_text()
    );
    create_second(api);
    let text = std::fs::read_to_string(&state).expect("the state file");
    assert!(text.starts_with("clb-state 2\n"), "{text}");
    assert!(text.ends_with("\neof 3\n"), "{text}");
}
