use super::*;
use crate::control::model::Model;

#[test]
fn round_trips_every_field() {
    let mut m = Model::new(vec![]);
    let l = Listener {
        protocol: Protocol::Http,
        port: 80,
        instance_protocol: Protocol::Http,
        instance_port: 8080,
        ssl_certificate_id: None,
    };
    let secure = Listener {
        protocol: Protocol::Https,
        port: 443,
        instance_protocol: Protocol::Https,
        instance_port: 8443,
        ssl_certificate_id: Some("arn:aws:iam::1:server-certificate/web cert".into()),
    };
    m.create(
        "web",
        vec![l, secure],
        vec!["zone-a".into(), "zone b".into()],
        "internal",
        vec![
            ("Name".into(), "my web, tier 1".into()),
            ("e".into(), "".into()),
        ],
    )
    .unwrap();
    m.register("web", &["127.0.0.3:9000".into()]).unwrap();
    let policy = |name: &str, type_name: &str, attributes: &[(&str, &str)]| {
        crate::control::policies::PolicyDef {
            name: name.into(),
            type_name: type_name.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    };
    m.create_policy(
        "web",
        policy(
            "sticky",
            "LBCookieStickinessPolicyType",
            &[("CookieExpirationPeriod", "30")],
        ),
    )
    .unwrap();
    m.create_policy(
        "web",
        policy(
            "pp",
            "ProxyProtocolPolicyType",
            &[("ProxyProtocol", "true")],
        ),
    )
    .unwrap();
    m.set_listener_policies("web", 80, &["sticky".into()])
        .unwrap();
    m.set_backend_policies("web", 8080, &["pp".into()]).unwrap();
    let text = encode(&m.lbs);
    let back = decode(&text).unwrap();
    assert_eq!(back.len(), 1);
    let (a, b) = (&m.lbs[0], &back[0]);
    assert_eq!(a.listeners, b.listeners);
    assert_eq!(a.zones, b.zones);
    assert_eq!(a.tags, b.tags);
    assert_eq!(a.policies, b.policies);
    assert_eq!(a.listener_policies, b.listener_policies);
    assert_eq!(a.backend_policies, b.backend_policies);
    assert_eq!(a.health_check, b.health_check);
    assert_eq!(a.attributes, b.attributes);
    assert_eq!(a.registered[0].instance, b.registered[0].instance);
    assert_eq!(
        a.created.duration_since(UNIX_EPOCH).unwrap().as_millis(),
        b.created.duration_since(UNIX_EPOCH).unwrap().as_millis()
    );
}

#[test]
fn refuses_damaged_files() {
    assert!(decode("").is_err());
    assert!(decode("something else\n").is_err());
    assert!(decode("clb-state 1\nlb web 0 internal\n").is_err());
    assert!(decode("clb-state 1\nlb web x internal\nend\n").is_err());
    assert!(decode("clb-state 1\nlistener HTTP 80 HTTP 80\n").is_err());
    assert!(decode("clb-state 1\nlb web 0 internal\nzone %G1\nend\n").is_err());
    assert_eq!(decode("clb-state 1\n").unwrap().len(), 0);
    assert_eq!(decode("clb-state 2\neof 0\n").unwrap().len(), 0);
    // Format 2: cut short (even right after a whole load balancer), a wrong count,
    // or anything after the end line.
    assert!(decode("clb-state 2\n").is_err());
    assert!(decode("clb-state 2\nlb web 0 internal\nend\n").is_err());
    assert!(decode("clb-state 2\nlb web 0 internal\nend\neof 2\n").is_err());
    assert!(decode("clb-state 2\nlb web 0 internal\nend\neof 1\nzone a\n").is_err());
    assert!(decode("clb-state 1\nlb web 0 internal\nend\neof 1\n").is_err());
    assert_eq!(
        decode("clb-state 2\nlb web 0 internal\nend\neof 1\n\n")
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn saves_atomically_and_loads_back() {
    let dir = std::env::temp_dir().join(format!("clb-state-test-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = StateFile::new(dir.join("state"));
    assert!(file.load().unwrap().is_empty());
    let mut m = Model::new(vec![]);
    let l = Listener {
        protocol: Protocol::Http,
        port: 80,
        instance_protocol: Protocol::Http,
        instance_port: 80,
        ssl_certificate_id: None,
    };
    m.create("web", vec![l], vec!["a".into()], "internal", vec![])
        .unwrap();
    file.save(&m.lbs).unwrap();
    assert_eq!(file.load().unwrap()[0].name, "web");
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary file left behind"
    );
    fs::remove_dir_all(&dir).unwrap();
}
