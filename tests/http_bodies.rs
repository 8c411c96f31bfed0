//! Request and response bodies through an HTTP listener: Content-Length and chunked,
//! byte-exact both ways, streamed with bounded memory (DESIGN §3, issue 2 §4).

mod common;

use common::*;

const MIB: usize = 1024 * 1024;
/// clb's peak resident set size may not exceed this while 64 MiB pass through.
const PEAK_RSS_LIMIT_KIB: u64 = 48 * 1024;

fn clb_for(backend: &Backend) -> Clb {
    Clb::http(&[backend.instance("zone-a")], &["--workers", "2"])
}

/// The offset of the first byte of `body` that is not the pattern, if any.
fn first_pattern_mismatch(body: &[u8]) -> Option<usize> {
    body.iter()
        .enumerate()
        .position(|(i, &b)| b != pattern_byte(i))
}

#[test]
fn content_length_upload_reaches_the_instance_byte_exact() {
    let backend = Backend::start(IP1, "i-1", Behavior::CountBody);
    let clb = clb_for(&backend);
    let body = pattern(MIB + 17);
    let mut client = clb.connect();
    client.send(
        format!(
            "POST /up HTTP/1.1\r\nHost: test.example\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    client.send(&body);
    let r = client.response();
    assert_eq!(r.status, 200);
    let h = hash_of(&[&body]);
    assert_eq!(r.body_text(), upload_summary(&h, &h));
}

#[test]
fn chunked_upload_reaches_the_instance_with_chunk_framing_unchanged() {
    let backend = Backend::start(IP1, "i-1", Behavior::CountBody);
    let clb = clb_for(&backend);
    let mut wire = Vec::new();
    let mut payload = Vec::new();
    let mut offset = 0;
    for size in [1usize, 4095, 17, 70_000, 3, 0x1000] {
        let data: Vec<u8> = (offset..offset + size).map(pattern_byte).collect();
        offset += size;
        wire.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        wire.extend_from_slice(&data);
        wire.extend_from_slice(b"\r\n");
        payload.extend_from_slice(&data);
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut client = clb.connect();
    client.send(b"POST /up HTTP/1.1\r\nHost: test.example\r\nTransfer-Encoding: chunked\r\n\r\n");
    client.send(&wire);
    let r = client.response();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body_text(),
        upload_summary(&hash_of(&[&payload]), &hash_of(&[&wire]))
    );
}

#[test]
fn content_length_download_reaches_the_client_byte_exact() {
    let len = MIB + 5;
    let backend = Backend::start(IP1, "i-1", Behavior::Fixed { len, chunk: None });
    let clb = clb_for(&backend);
    let r = clb.connect().request(&get("/"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
    assert_eq!(r.body.len(), len);
    assert_eq!(first_pattern_mismatch(&r.body), None);
}

#[test]
fn chunked_download_reaches_http11_client_with_chunk_framing_unchanged() {
    let (len, chunk) = (100_000, 4093);
    let backend = Backend::start(
        IP1,
        "i-1",
        Behavior::Fixed {
            len,
            chunk: Some(chunk),
        },
    );
    let clb = clb_for(&backend);
    let r = clb.connect().request(&get("/"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(
        r.wire_body == chunked_wire(len, chunk),
        "chunk framing changed"
    );
}

#[test]
fn chunked_download_to_http10_client_is_dechunked_and_the_connection_closed() {
    let len = 100_000;
    let backend = Backend::start(
        IP1,
        "i-1",
        Behavior::Fixed {
            len,
            chunk: Some(1000),
        },
    );
    let clb = clb_for(&backend);
    let mut client = clb.connect();
    let r = client.request("GET / HTTP/1.0\r\nHost: test.example\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("transfer-encoding"),
        None,
        "HTTP/1.0 has no chunked coding; head: {:?}",
        String::from_utf8_lossy(&r.head)
    );
    assert_eq!(r.body.len(), len);
    assert_eq!(first_pattern_mismatch(&r.body), None);
    if !r.close_delimited {
        client
            .expect_closed(std::time::Duration::from_secs(5))
            .unwrap();
    }
}

#[test]
fn upload_of_64_mib_streams_through_with_bounded_memory() {
    let len = 64 * MIB;
    let backend = Backend::start(IP1, "i-1", Behavior::CountBody);
    let clb = clb_for(&backend);
    let mut client = clb.connect();
    client.send(
        format!("POST /big HTTP/1.1\r\nHost: test.example\r\nContent-Length: {len}\r\n\r\n")
            .as_bytes(),
    );
    let mut sent = BodyHash::default();
    struct Tee<'a>(&'a mut Client, &'a mut BodyHash);
    impl std::io::Write for Tee<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.0.stream.write(buf)?;
            self.1.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    assert!(
        write_pattern(&mut Tee(&mut client, &mut sent), 0, len),
        "clb stopped taking the upload"
    );
    let r = client.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), upload_summary(&sent, &sent));
    let peak = clb.peak_rss_kib();
    println!("clb peak RSS after a 64 MiB upload: {peak} KiB");
    assert!(peak < PEAK_RSS_LIMIT_KIB, "clb peak RSS {peak} KiB");
}

#[test]
fn download_of_64_mib_streams_through_with_bounded_memory() {
    let len = 64 * MIB;
    let backend = Backend::start(IP1, "i-1", Behavior::Fixed { len, chunk: None });
    let clb = clb_for(&backend);
    let r = clb.connect().request(&get("/big"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), len);
    assert_eq!(first_pattern_mismatch(&r.body), None);
    let peak = clb.peak_rss_kib();
    println!("clb peak RSS after a 64 MiB download: {peak} KiB");
    assert!(peak < PEAK_RSS_LIMIT_KIB, "clb peak RSS {peak} KiB");
}
