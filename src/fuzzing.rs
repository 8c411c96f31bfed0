//! Fuzz entry points. The cargo-fuzz targets in `fuzz/` are one-line wrappers around
//! these, and `tests/fuzz_corpus.rs` replays every corpus file through them on stable,
//! so the invariants are checked in ordinary CI too.

use crate::http::request::{self, Forwarding, Parse};
use crate::worker::buffer::BufPool;

/// Request head parse + rewrite. Invariants: no panic; a head that is accepted is
/// rewritten into a head that parses again, completely, as HTTP/1.1, with the client
/// address in X-Forwarded-For and no hop-by-hop header left.
pub fn request_head(data: &[u8]) {
    let fwd = Forwarding {
        client_ip: [192, 0, 2, 1].into(),
        local_ip: [127, 0, 0, 1].into(),
        listener_port: 8080,
        scheme: "http",
    };
    let mut out = BufPool::new(1).get();
    let Ok(Parse::Complete(info)) = request::forward_head(data, &fwd, &mut out) else {
        return;
    };
    assert!(info.head_len <= data.len());
    let mut headers = [httparse::EMPTY_HEADER; request::MAX_HEADERS + 4];
    let mut again = httparse::Request::new(&mut headers);
    match again.parse(out.bytes()) {
        Ok(httparse::Status::Complete(n)) => {
            assert_eq!(n, out.len(), "rewritten head has trailing bytes")
        }
        other => panic!("rewritten head does not parse: {other:?}"),
    }
    assert_eq!(again.version, Some(1));
    let names = || again.headers.iter().map(|h| h.name.to_ascii_lowercase());
    assert!(names().any(|n| n == "x-forwarded-for"));
    assert!(names().all(|n| n != "connection" && n != "keep-alive" && n != "upgrade"));
    assert_eq!(names().filter(|n| n == "host").count(), 1);
}
