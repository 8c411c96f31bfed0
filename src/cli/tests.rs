use super::*;

fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

fn run(line: &str) -> Config {
    match parse(&args(line)) {
        Ok(Command::Run(config)) => *config,
        other => panic!("{line}: {other:?}"),
    }
}

fn refused(line: &str) -> String {
    match parse(&args(line)) {
        Err(CliError(e)) => e,
        other => panic!("{line}: accepted as {other:?}"),
    }
}

#[test]
fn defaults() {
    let c = run("--listener http:8080:http:80");
    let lb = &c.load_balancer;
    assert_eq!(lb.name, "default");
    assert_eq!(
        lb.listeners,
        vec![parse_listener("http:8080:http:80").unwrap()]
    );
    assert!(lb.instances.is_empty());
    assert_eq!(lb.zones, vec![DEFAULT_ZONE.to_owned()]);
    assert!(lb.cross_zone);
    assert_eq!(lb.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.runtime.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(c.runtime.workers, default_workers());
    assert!((1..=256).contains(&c.runtime.workers));
    assert_eq!(c.runtime.max_connections, 10_000);
}

#[test]
fn every_flag_set() {
    let c = run(
        "-n web -l http:80:http:8080 --listener http:81 -i a=10.0.0.1@z1 \
         --instance b=[::1]:9000@z2 --zones z2,z1 --cross-zone off --idle-timeout=4000 \
         --bind ::1 --workers 256 --max-connections 1000000 --api off",
    );
    let lb = &c.load_balancer;
    assert_eq!(lb.name, "web");
    assert_eq!(lb.listeners.len(), 2);
    assert_eq!(lb.listeners[1].instance_port, 81);
    assert_eq!(lb.instances.len(), 2);
    assert_eq!(lb.instances[1].port, Some(9000));
    assert_eq!(lb.zones, ["z2", "z1"]);
    assert!(!lb.cross_zone);
    assert_eq!(lb.idle_timeout, Duration::from_secs(4000));
    assert_eq!(c.runtime.bind, "::1".parse::<IpAddr>().unwrap());
    assert_eq!(c.runtime.workers, 256);
    assert_eq!(c.runtime.max_connections, 1_000_000);
    assert!(
        run("-l http:80 --idle-timeout 1 --workers 1 --max-connections 1 --cross-zone on")
            .load_balancer
            .cross_zone
    );
}

#[test]
fn zones_default_to_those_instances_name() {
    let c = run("-l http:80 -i a=h@z2 -i b=h -i c=h@z2 -i d=h@z3");
    assert_eq!(c.load_balancer.zones, ["z2", DEFAULT_ZONE, "z3"]);
}

#[test]
fn help_and_version_win() {
    assert_eq!(parse(&args("--help")), Ok(Command::Help(usage())));
    assert_eq!(parse(&args("-h --workers 0")), Ok(Command::Help(usage())));
    let version = Ok(Command::Version(format!(
        "clb {}",
        env!("CARGO_PKG_VERSION")
    )));
    assert_eq!(parse(&args("-V")), version);
    assert_eq!(parse(&args("--version -l ftp:1")), version);
}

#[test]
fn help_names_every_flag() {
    let help = usage();
    let opts = options();
    let longs = [
        "name",
        "listener",
        "instance",
        "zones",
        "cross-zone",
        "idle-timeout",
        "bind",
        "workers",
        "max-connections",
        "api",
        "api-credentials",
        "state",
        "draining",
        "health-check",
        "health-interval",
        "health-timeout",
        "healthy-threshold",
        "unhealthy-threshold",
        "proxy-protocol",
        "cert",
        "key",
        "ssl-policy",
        "backend-ca",
        "backend-public-key",
        "desync-mode",
        "sticky",
        "header-timeout",
        "access-log",
        "allow",
        "subnet",
        "security-group",
        "max-backend-connections",
        "surge-queue",
        "help",
        "version",
    ];
    for long in longs {
        assert!(help.contains(&format!("--{long} ")), "help lacks --{long}");
        // Every flag in the help is one getopts knows.
        assert!(opts
            .parse([format!("--{long}=x")])
            .map_or_else(|e| !matches!(e, Fail::UnrecognizedOption(_)), |_| true));
    }
    assert!(help.lines().next().unwrap().starts_with("clb "));
    assert!(help.contains("Usage: clb [OPTIONS]"));
    for short in ["-n,", "-l,", "-i,", "-h,", "-V,"] {
        assert!(help.contains(short), "help lacks {short}");
    }
}

#[test]
fn listener_errors() {
    assert_eq!(
        refused(""),
        "at least one --listener is required, e.g. --listener http:8080:http:80"
    );
    assert_eq!(refused("--name web"), refused(""));
    assert_eq!(
        refused("-l xyz"),
        "--listener 'xyz': must be PROTO:PORT or PROTO:PORT:INSTANCE_PROTO:INSTANCE_PORT, \
         e.g. http:8080:http:80"
    );
    assert!(refused("-l http:0").starts_with("--listener 'http:0': port '0' must be"));
    assert!(refused("-l http:80:tcp:80").starts_with("--listener 'http:80:tcp:80': HTTP cannot"));
    assert_eq!(
        run("-l tcp:5432").load_balancer.listeners[0].instance_port,
        5432
    );
    assert_eq!(
        run("-l https:8443:http:80").load_balancer.listeners.len(),
        1
    );
    for spec in [
        "ssl:443:ssl:443",
        "ssl:443:tcp:80",
        "http:80:https:443",
        "tcp:80:ssl:443",
    ] {
        assert_eq!(run(&format!("-l {spec}")).load_balancer.listeners.len(), 1);
    }
    assert_eq!(
        run("-l http:80:https:443 --backend-public-key k.pem --backend-ca ca.pem")
            .runtime
            .backend_tls,
        crate::tls::backend::BackendTls {
            ca: Some("ca.pem".into()),
            public_keys: vec!["k.pem".into()],
        }
    );
    assert!(refused("-l http:80 --ssl-policy ELBSecurityPolicy-2016-08").contains("rustls"));
    assert!(refused("-l http:80 --cert a.pem").starts_with("--cert and --key come in pairs"));
    assert_eq!(
        refused("-l http:80 -l HTTP:80:http:81"),
        "--listener 'HTTP:80:http:81': port 80 already has a listener (one listener per port)"
    );
}

#[test]
fn instance_errors() {
    assert_eq!(
        refused("-l http:80 -i nope"),
        "--instance 'nope': must be ID=HOST[:PORT][@ZONE], e.g. i-1=10.0.0.1:8080@zone-a"
    );
    assert!(refused("-l http:80 -i i=h:0").starts_with("--instance 'i=h:0': port '0' must"));
    assert_eq!(
        refused("-l http:80 -i a=10.0.0.1 -i a=10.0.0.2"),
        "--instance 'a=10.0.0.2': instance id 'a' is already registered"
    );
}

#[test]
fn value_errors() {
    let cases = [
        ("--name -bad", "--name '-bad': must be 1 to 32 of A-Z, a-z, 0-9 and '-', not starting or ending with '-'"),
        ("--zones a,,b", "--zones 'a,,b': empty zone name: give zone names separated by commas, e.g. zone-a,zone-b"),
        ("--zones a_b", "--zones 'a_b': zone 'a_b' must be 1 to 64 of A-Z, a-z, 0-9 and '-'"),
        ("--cross-zone maybe", "--cross-zone 'maybe': must be on or off"),
        ("--cross-zone ON", "--cross-zone 'ON': must be on or off"),
        ("--idle-timeout 0", "--idle-timeout '0': must be a whole number of seconds from 1 to 4000"),
        ("--idle-timeout 4001", "--idle-timeout '4001': must be a whole number of seconds from 1 to 4000"),
        ("--idle-timeout +5", "--idle-timeout '+5': must be a whole number of seconds from 1 to 4000"),
        ("--idle-timeout 1.5", "--idle-timeout '1.5': must be a whole number of seconds from 1 to 4000"),
        ("--workers x", "--workers 'x': must be a whole number from 1 to 256"),
        ("--workers 257", "--workers '257': must be a whole number from 1 to 256"),
        ("--workers 99999999999999999999999", "--workers '99999999999999999999999': must be a whole number from 1 to 256"),
        ("--max-connections 0", "--max-connections '0': must be a whole number from 1 to 1000000"),
        ("--max-connections 1000001", "--max-connections '1000001': must be a whole number from 1 to 1000000"),
        ("--bind localhost", "--bind 'localhost': must be an IP address, e.g. 0.0.0.0, 127.0.0.1 or ::"),
        ("--api 10.0.0.1:9900", "--api '10.0.0.1:9900': binds only a loopback address unless --api-credentials is given"),
        ("--api 9900", "--api '9900': must be IP:PORT (e.g. 127.0.0.1:9900) or off"),
        ("--draining 0", "--draining '0': must be a whole number of seconds from 1 to 3600"),
        ("--draining 3601", "--draining '3601': must be a whole number of seconds from 1 to 3600"),
    ];
    for (flags, want) in cases {
        assert_eq!(refused(&format!("-l http:80 {flags}")), want);
    }
    assert_eq!(
        parse(&["-l".into(), "http:80".into(), "--workers=".into()]),
        Err(CliError(
            "--workers '': must be a whole number from 1 to 256".into()
        ))
    );
}

#[test]
fn proxy_protocol_flags_are_checked() {}

#[test]
fn error_lines_stay_one_line() {
    let hostile = vec!["-l".to_owned(), "http:80\n\u{1b}[2Jclb: fine".to_owned()];
    let Err(CliError(e)) = parse(&hostile) else {
        panic!("accepted");
    };
    assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{e}");
    let Err(CliError(e)) = parse(&["--\u{1b}x\ny".to_owned()]) else {
        panic!("accepted");
    };
    assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{e}");
}

#[test]
fn this_sessions_flags_refuse_bad_values() {
    let cases = [
        (
            "--desync-mode lax",
            "--desync-mode 'lax': must be monitor, defensive or strictest",
        ),
        (
            "--header-timeout 0",
            "--header-timeout '0': must be a whole number of seconds from 1 to 4000",
        ),
        (
            "--max-backend-connections 0",
            "--max-backend-connections '0': must be a whole number from 1 to 1000000",
        ),
        (
            "--surge-queue -1",
            "--surge-queue '-1': must be a whole number from 0 to 1000000",
        ),
        (
            "--sticky lb:x",
            "--sticky 'lb:x': 'x' must be a whole number of seconds above 0",
        ),
        (
            "--allow 10.0.0.0/99",
            "--allow '10.0.0.0/99': prefix length '99' must be 0-32",
        ),
    ];
    for (flags, expected) in cases {
        assert_eq!(refused(&format!("-l http:80 {flags}")), expected, "{flags}");
    }
    let c = run("-l http:80 --desync-mode strictest --header-timeout 5 --max-backend-connections 3 --surge-queue 0 --sticky app:SID --allow 8080=10.0.0.0/8 --access-log -");
    assert_eq!(
        c.load_balancer.desync_mode,
        crate::http::desync::Mode::Strictest
    );
    assert_eq!(c.runtime.header_timeout, Duration::from_secs(5));
    assert_eq!(c.runtime.max_backend_connections, 3);
    assert_eq!(c.runtime.surge_queue, 0);
    assert_eq!(c.runtime.allow.rules.len(), 1);
    assert_eq!(
        c.runtime.access_log,
        Some(crate::access_log::Target::Stdout)
    );
    assert_eq!(
        c.load_balancer.sticky,
        Some(crate::http::sticky::Policy::Application {
            cookie: "SID".into()
        })
    );
}

#[test]
fn subnet_and_security_group_flags() {
    let c = run("-l http:80 --subnet subnet-1=zone-a --subnet subnet-2=zone-b --security-group sg-1=127.0.0.2,10.0.0.0/8 --security-group sg-2=::1");
    assert_eq!(
        c.runtime.subnets,
        [
            ("subnet-1".to_string(), "zone-a".to_string()),
            ("subnet-2".to_string(), "zone-b".to_string())
        ]
    );
    let ids: Vec<&str> = c
        .runtime
        .security_groups
        .iter()
        .map(|g| g.id.as_str())
        .collect();
    assert_eq!(ids, ["sg-1", "sg-2"]);
    assert_eq!(c.runtime.security_groups[0].networks.len(), 2);
    for (flags, expected) in [
        (
            "--subnet subnet-1",
            "--subnet 'subnet-1': must be ID=ZONE",
        ),
        (
            "--subnet s=a --subnet s=b",
            "--subnet 's=b': subnet id given twice",
        ),
        (
            "--security-group sg-1=10.0.0.0/99",
            "--security-group 'sg-1=10.0.0.0/99': prefix length '99' must be 0-32",
        ),
        (
            "--security-group web=10.0.0.1",
            "--security-group 'web=10.0.0.1': 'web' must be sg- then 1 to 61 of A-Z, a-z, 0-9 and '-'",
        ),
        (
            "--security-group sg-1=10.0.0.1 --security-group sg-1=10.0.0.2",
            "--security-group 'sg-1=10.0.0.2': security group id given twice",
        ),
    ] {
        assert_eq!(refused(&format!("-l http:80 {flags}")), expected, "{flags}");
    }
}

#[test]
fn address_pool_flag() {
    assert!(
        usage().contains("--address-pool "),
        "help lacks --address-pool"
    );
    assert_eq!(run("-l http:80").runtime.address_pool, None);
    let c = run("-l http:80 --address-pool 127.0.3.0/29,10.0.0.5");
    let pool = c.runtime.address_pool.expect("a pool");
    assert_eq!(pool.len(), 7);
    assert_eq!(
        refused("-l http:80 --address-pool 127.0.3.0/29 --bind 127.0.0.1"),
        "--address-pool '127.0.3.0/29': cannot be combined with --bind: with a pool each load balancer listens on its own address"
    );
    assert_eq!(
        refused("-l http:80 --address-pool fd00::/120"),
        "--address-pool 'fd00::/120': 'fd00::/120': IPv6 pools are not supported (IPv4 addresses only)"
    );
    assert!(refused("-l http:80 --address-pool 127.0.3.0/99").contains("prefix length"));
}

#[test]
fn node_flags_default_and_parse() {
    let n = run("--listener tcp:80").runtime.node;
    assert_eq!(
        (
            n.name.as_str(),
            n.zone.as_str(),
            n.address.to_string(),
            n.ttl
        ),
        (
            "node-1",
            "zone-a",
            "127.0.0.1".into(),
            Duration::from_secs(10)
        )
    );
    assert_eq!(
        run("--listener tcp:80 --bind 127.0.2.1")
            .runtime
            .node
            .address,
        "127.0.2.1".parse::<IpAddr>().unwrap()
    );
    let n = run(
        "--listener tcp:80 --node n_2.b --node-zone us-east-1b --node-address ::1 --node-ttl 2",
    )
    .runtime
    .node;
    assert_eq!(
        (
            n.name.as_str(),
            n.zone.as_str(),
            n.address.to_string(),
            n.ttl
        ),
        ("n_2.b", "us-east-1b", "::1".into(), Duration::from_secs(2))
    );
    assert_eq!(n.info().name, "n_2.b");
}

#[test]
fn node_flags_refused() {
    for (line, want) in [
        ("--node -x", "--node '-x': must be 1 to 63"),
        ("--node a/b", "--node 'a/b': must be 1 to 63"),
        ("--node-zone a:b", "--node-zone 'a:b': must be 1 to 63"),
        (
            "--node-address 0.0.0.0",
            "--node-address '0.0.0.0': must be the IP address",
        ),
        (
            "--node-address host",
            "--node-address 'host': must be the IP address",
        ),
        (
            "--node-ttl 1",
            "--node-ttl '1': must be a whole number of seconds from 2 to 60",
        ),
        (
            "--node-ttl 61",
            "--node-ttl '61': must be a whole number of seconds from 2 to 60",
        ),
    ] {
        let e = refused(&format!("--listener tcp:80 {line}"));
        assert!(e.starts_with(want), "{line}: {e}");
    }
    let long = "a".repeat(64);
    assert!(refused(&format!("--listener tcp:80 --node {long}")).contains("1 to 63"));
}
