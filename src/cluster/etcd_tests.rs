//! The etcd client's parsing on canned gateway JSON (what etcd 3.4 answers), no socket.

use super::*;

fn v(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn prefix_ends() {
    assert_eq!(prefix_end(b"/clb/"), b"/clb0".to_vec());
    assert_eq!(prefix_end(b"a\xff\xff"), b"b".to_vec());
    assert_eq!(prefix_end(b"\xff"), vec![0]);
}

#[test]
fn range_answer() {
    let answer = v(
        r#"{"header":{"cluster_id":"1","member_id":"2","revision":"7","raft_term":"2"},
        "kvs":[{"key":"L2NsYi9sYi9h","create_revision":"5","mod_revision":"6","version":"2","value":"b25l"},
               {"key":"L2NsYi9sYi9i","create_revision":"7","mod_revision":"7","version":"1","lease":"99"}],
        "count":"2"}"#,
    );
    let (kvs, revision) = parse_range(&answer).unwrap();
    assert_eq!(revision, 7);
    assert_eq!(
        kvs[0],
        Kv {
            key: b"/clb/lb/a".to_vec(),
            value: b"one".to_vec(),
            mod_revision: 6,
            lease: 0
        }
    );
    assert_eq!(
        kvs[1],
        Kv {
            key: b"/clb/lb/b".to_vec(),
            value: vec![],
            mod_revision: 7,
            lease: 99
        }
    );
    let (kvs, revision) = parse_range(&v(r#"{"header":{"revision":"3"}}"#)).unwrap();
    assert_eq!((kvs.len(), revision), (0, 3));
    assert!(matches!(
        parse_range(&v(r#"{"kvs":[]}"#)),
        Err(EtcdError::Protocol(_))
    ));
    assert!(matches!(
        parse_range(&v(r#"{"header":{"revision":"3"},"kvs":[{"key":"!!"}]}"#)),
        Err(EtcdError::Protocol(_))
    ));
}

#[test]
fn txn_request_and_answers() {
    let body = txn_body(
        &[(b"k".to_vec(), 5), (b"n".to_vec(), 0)],
        &[(b"k".to_vec(), b"v".to_vec())],
        &[b"d".to_vec()],
    );
    assert_eq!(
        body,
        v(
            r#"{"compare":[{"key":"aw==","target":"MOD","result":"EQUAL","mod_revision":"5"},
                         {"key":"bg==","target":"MOD","result":"EQUAL","mod_revision":"0"}],
              "success":[{"request_put":{"key":"aw==","value":"dg=="}},
                         {"request_delete_range":{"key":"ZA=="}}]}"#
        )
    );
    assert_eq!(
        parse_txn(&v(
            r#"{"header":{"revision":"9"},"succeeded":true,"responses":[]}"#
        )),
        Ok(9)
    );
    assert_eq!(
        parse_txn(&v(r#"{"header":{"revision":"9"}}"#)),
        Err(EtcdError::Conflict)
    );
}

#[test]
fn watch_messages() {
    let created = v(r#"{"result":{"header":{"revision":"4"},"created":true}}"#);
    assert_eq!(parse_watch_message(&created), Ok(None));
    let events = v(r#"{"result":{"header":{"revision":"6"},"events":[
        {"kv":{"key":"YQ==","create_revision":"5","mod_revision":"5","version":"1","value":"eA=="}},
        {"type":"DELETE","kv":{"key":"Yg==","mod_revision":"6"}}]}}"#);
    let got = parse_watch_message(&events).unwrap().unwrap();
    assert_eq!(got[0].kind, WatchKind::Put);
    assert_eq!(
        (
            got[0].kv.key.as_slice(),
            got[0].kv.value.as_slice(),
            got[0].kv.mod_revision
        ),
        (&b"a"[..], &b"x"[..], 5)
    );
    assert_eq!(
        (got[1].kind, got[1].kv.mod_revision, got[1].kv.value.len()),
        (WatchKind::Delete, 6, 0)
    );
    let compacted =
        v(r#"{"result":{"header":{"revision":"30"},"compact_revision":"20","canceled":true}}"#);
    assert_eq!(
        parse_watch_message(&compacted),
        Err(EtcdError::Compacted {
            compact_revision: 20
        })
    );
    let cancelled = v(r#"{"result":{"header":{},"canceled":true,"cancel_reason":"gone"}}"#);
    assert!(
        matches!(parse_watch_message(&cancelled), Err(EtcdError::Unreachable(r)) if r.contains("gone"))
    );
    let bad = v(r#"{"result":{"events":[{"type":"MOVE","kv":{"key":"YQ=="}}]}}"#);
    assert!(matches!(
        parse_watch_message(&bad),
        Err(EtcdError::Protocol(_))
    ));
}

#[test]
fn stream_objects_split_anywhere() {
    let whole = br#"{"result":{"created":true}}
{"result":{"events":[{"kv":{"key":"YQ==","mod_revision":"2"}}]}}
"#;
    for cut in 0..whole.len() {
        let mut buffer = whole[..cut].to_vec();
        let mut seen = 0;
        while take_object(&mut buffer).unwrap().is_some() {
            seen += 1;
        }
        buffer.extend_from_slice(&whole[cut..]);
        while take_object(&mut buffer).unwrap().is_some() {
            seen += 1;
        }
        assert_eq!(seen, 2, "cut at {cut}");
    }
    let mut junk = b"{]".to_vec();
    assert!(take_object(&mut junk).is_err());
}

#[test]
fn error_answers() {
    let stop = |status, body: &str| match classify_error(status, body.as_bytes()) {
        Attempt::Stop(e) => Some(e),
        Attempt::Next(_) => None,
    };
    assert_eq!(
        stop(
            503,
            r#"{"error":"etcdserver: no leader","code":14,"message":"etcdserver: no leader"}"#
        ),
        None
    );
    assert_eq!(
        stop(
            400,
            r#"{"error":"x","code":4,"message":"etcdserver: request timed out"}"#
        ),
        None
    );
    assert_eq!(
        stop(
            400,
            r#"{"error":"mvcc: required revision has been compacted","code":11,"message":"mvcc: required revision has been compacted"}"#
        ),
        Some(EtcdError::Compacted {
            compact_revision: 0
        })
    );
    assert!(
        matches!(stop(400, r#"{"code":3,"message":"etcdserver: key is not provided"}"#), Some(EtcdError::Protocol(m)) if m.contains("key is not provided"))
    );
    assert!(
        matches!(stop(404, "404 page not found"), Some(EtcdError::Protocol(m)) if m.contains("404 page"))
    );
}

#[test]
fn endpoints_checked_at_new() {
    let ok = Etcd::new(
        &[
            "http://127.0.0.1:2379".into(),
            "http://127.0.0.2:2379".into(),
        ],
        Duration::from_secs(1),
    );
    assert_eq!(
        ok.map(|e| e.endpoints).ok(),
        Some(vec![
            "127.0.0.1:2379".to_string(),
            "127.0.0.2:2379".to_string()
        ])
    );
    assert!(
        matches!(Etcd::new(&["https://h:1".into()], Duration::from_secs(1)), Err(EtcdError::Protocol(m)) if m.contains("https"))
    );
    assert!(Etcd::new(&[], Duration::from_secs(1)).is_err());
}

#[test]
fn unreachable_names_every_endpoint() {
    // Two ports nothing listens on: bind, note the port, close.
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let endpoints: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let etcd = Etcd::new(&endpoints, Duration::from_millis(500)).unwrap();
    match etcd.put(b"k", b"v", 0) {
        Err(EtcdError::Unreachable(why)) => {
            assert!(ports.iter().all(|p| why.contains(&p.to_string())), "{why}");
        }
        other => panic!("{other:?}"),
    }
}
