//! Replays every file of every fuzz corpus through the library's fuzz entry points, so
//! the invariants the fuzzers check (and every crash they ever found) run in stable CI.

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        run(&data);
        count += 1;
    }
    assert!(count > 0, "empty corpus {}", dir.display());
    println!("{target}: replayed {count} corpus files");
}

#[test]
fn request_head_corpus() {
    replay("request_head", clb::fuzzing::request_head);
}

#[test]
fn api_query_corpus() {
    replay("api_query", clb::fuzzing::api_query);
}

#[test]
fn sigv4_corpus() {
    replay("sigv4", clb::fuzzing::sigv4);
}

#[test]
fn state_file_corpus() {
    replay("state_file", clb::fuzzing::state_file);
}

#[test]
fn flag_specs_corpus() {
    replay("flag_specs", clb::fuzzing::flag_specs);
}

#[test]
fn chunked_and_response_corpus() {
    replay("chunked_and_response", clb::fuzzing::chunked_and_response);
}

#[test]
fn proxy_protocol_corpus() {
    replay("proxy_protocol", clb::fuzzing::proxy_protocol);
}

#[test]
fn request_framing_corpus() {
    replay("request_framing", clb::fuzzing::request_framing);
}

#[test]
fn dns_query_corpus() {
    replay("dns_query", clb::fuzzing::dns_query);
}
