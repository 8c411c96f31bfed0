use super::*;

fn ok(query: &str, body: &str) -> Params {
    match parse(query.as_bytes(), body.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!("{query:?} {body:?}: {e}"),
    }
}

fn err(query: &[u8], body: &[u8]) -> QueryError {
    match parse(query, body) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn decodes_query_and_body_together() {
    let p = ok(
        "Action=DescribeLoadBalancers&Version=2012-06-01",
        "LoadBalancerNames.member.1=web",
    );
    assert_eq!(p.action(), Some("DescribeLoadBalancers"));
    assert_eq!(p.version(), Some("2012-06-01"));
    assert_eq!(p.get("LoadBalancerNames.member.1"), Some("web"));
    assert_eq!(p.len(), 3);
}

#[test]
fn percent_and_plus_decoding() {
    let p = ok("", "A=a%20b+c&B=%E2%9C%93&C=%2B%3d%26&D&E=&F=x=y");
    assert_eq!(p.get("A"), Some("a b c"));
    assert_eq!(p.get("B"), Some("\u{2713}"));
    assert_eq!(p.get("C"), Some("+=&"));
    assert_eq!(p.get("D"), Some(""));
    assert_eq!(p.get("E"), Some(""));
    assert_eq!(p.get("F"), Some("x=y"));
    assert_eq!(ok("%41ction=X", "").action(), Some("X"));
    assert!(ok("&&a=1&", "&").get("a").is_some());
    assert!(ok("", "").is_empty());
}

#[test]
fn bad_encodings_name_the_parameter() {
    for (raw, param) in [
        (&b"Name=%zz"[..], "Name"),
        (b"Name=%4", "Name"),
        (b"Name=%", "Name"),
        (b"Na%g0me=1", "Na%g0me"),
        (b"Name=%FF", "Name"),
        (b"N\xffame=1", "N\u{fffd}ame"),
    ] {
        let e = err(raw, b"");
        assert_eq!(e.code(), "MalformedQueryString");
        assert!(
            matches!(&e, QueryError::Malformed { param: p, .. } if p == param),
            "{e:?}"
        );
    }
    assert_eq!(err(b"=value", b"").code(), "MalformedQueryString");
}

#[test]
fn duplicates_are_refused_across_sources() {
    assert_eq!(err(b"A=1&A=2", b"").code(), "InvalidParameterValue");
    assert!(matches!(err(b"A=1", b"A=1"), QueryError::Duplicate { param } if param == "A"));
    // Different encodings of one name are the same name.
    assert!(matches!(
        err(b"A=1&%41=2", b""),
        QueryError::Duplicate { .. }
    ));
}

#[test]
fn limits_are_errors() {
    let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("P{i}=v")).collect();
    assert_eq!(
        err(many.join("&").as_bytes(), b"").code(),
        "MalformedQueryString"
    );
    let just: Vec<String> = (0..MAX_PARAMS).map(|i| format!("P{i}=v")).collect();
    assert_eq!(ok(&just.join("&"), "").len(), MAX_PARAMS);

    let long_name = format!("{}=1", "n".repeat(MAX_NAME_LEN + 1));
    assert!(matches!(
        err(long_name.as_bytes(), b""),
        QueryError::Malformed { .. }
    ));
    ok(&format!("{}=1", "n".repeat(MAX_NAME_LEN)), "");

    let long_value = format!("V={}", "%41".repeat(MAX_VALUE_LEN + 1));
    assert!(matches!(
        err(b"", long_value.as_bytes()),
        QueryError::Malformed { .. }
    ));
    assert_eq!(
        ok("", &format!("V={}", "a".repeat(MAX_VALUE_LEN)))
            .get("V")
            .map(str::len),
        Some(MAX_VALUE_LEN)
    );

    let half = vec![b'a'; MAX_TOTAL_LEN / 2 + 1];
    assert!(matches!(err(&half, &half), QueryError::Malformed { .. }));
}

#[test]
fn error_messages_are_bounded() {
    let e = parse_u32("X", &"9".repeat(10_000)).err();
    let msg = e.map(|e| e.message()).unwrap_or_default();
    assert!(msg.len() < 300, "{msg}");
    assert!(msg.contains("'X'"));
}

#[test]
fn members_in_numeric_order_with_gaps() {
    let p = ok(
        "Instances.member.10.InstanceId=j&Names.member.2=b&Names.member.10=c&Names.member.1=a",
        "Names.member.5=x&Names.member.0=no&Names.member.01=no&Names.member.1001=no&Names.member.x=no&Names.memberX=no",
    );
    assert_eq!(p.members("Names"), vec!["a", "b", "x", "c"]);
    assert!(p.members("Nothing").is_empty());
    // A prefix is whole segments: `Name` is not `Names`.
    assert!(p.members("Name").is_empty());
    assert_eq!(
        ok(&format!("L.member.{MAX_MEMBER_INDEX}=last"), "").members("L"),
        vec!["last"]
    );
}

#[test]
fn member_structs_group_fields_by_index() {
    let p = ok(
        "",
        "Listeners.member.2.Protocol=TCP&Listeners.member.2.LoadBalancerPort=443\
         &Listeners.member.1.Protocol=HTTP&Listeners.member.1.LoadBalancerPort=80\
         &Listeners.member.1.InstancePort=8080&Listeners.member.10.Protocol=HTTPS\
         &Listeners.member.1.PolicyNames.member.2=p2&Listeners.member.1.PolicyNames.member.1=p1",
    );
    let ls = p.member_structs("Listeners");
    assert_eq!(
        ls.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![1, 2, 10]
    );
    assert_eq!(ls[0].get("Protocol"), Some("HTTP"));
    assert_eq!(ls[0].u32("InstancePort"), Ok(Some(8080)));
    assert_eq!(ls[0].members("PolicyNames"), vec!["p1", "p2"]);
    assert_eq!(ls[1].u32("LoadBalancerPort"), Ok(Some(443)));
    assert_eq!(ls[1].u32("InstancePort"), Ok(None));
    assert_eq!(ls[2].get("Protocol"), Some("HTTPS"));
    let missing = ls[2].required("LoadBalancerPort").err();
    assert_eq!(
        missing.as_ref().map(QueryError::code),
        Some("MissingParameter")
    );
    assert!(missing
        .map(|e| e.message())
        .unwrap_or_default()
        .contains("Listeners.member.10.LoadBalancerPort"));
}

#[test]
fn nested_struct_lists() {
    let p = ok(
        "",
        "LoadBalancerAttributes.AdditionalAttributes.member.1.Key=elb.http.desyncmitigationmode\
         &LoadBalancerAttributes.AdditionalAttributes.member.1.Value=strictest\
         &LoadBalancerAttributes.ConnectionDraining.Enabled=TRUE\
         &LoadBalancerAttributes.ConnectionDraining.Timeout=300",
    );
    let extra = p.member_structs("LoadBalancerAttributes.AdditionalAttributes");
    assert_eq!(extra.len(), 1);
    assert_eq!(extra[0].get("Key"), Some("elb.http.desyncmitigationmode"));
    assert_eq!(extra[0].get("Value"), Some("strictest"));
    assert_eq!(
        p.bool("LoadBalancerAttributes.ConnectionDraining.Enabled"),
        Ok(Some(true))
    );
    assert_eq!(
        p.u32("LoadBalancerAttributes.ConnectionDraining.Timeout"),
        Ok(Some(300))
    );
    assert_eq!(p.bool("Absent"), Ok(None));
}

#[test]
fn typed_fields_report_validation_errors() {
    assert_eq!(parse_bool("B", "false"), Ok(false));
    for bad in ["", "yes", "1", "truee"] {
        let e = parse_bool("B", bad).err();
        assert_eq!(
            e.as_ref().map(QueryError::code),
            Some("ValidationError"),
            "{bad}"
        );
    }
    assert_eq!(parse_u32("N", "4294967295"), Ok(u32::MAX));
    assert_eq!(parse_u32("N", "007"), Ok(7));
    for bad in ["", "-1", "+1", " 1", "1.0", "4294967296", "0x10"] {
        assert!(
            matches!(parse_u32("N", bad), Err(QueryError::Invalid { .. })),
            "{bad}"
        );
    }
    let p = ok("Port=eighty", "");
    let e = p.u32("Port").err().map(|e| e.message()).unwrap_or_default();
    assert!(e.contains("'eighty'") && e.contains("'Port'"), "{e}");
    assert_eq!(
        p.required("Nope").err().map(|e| e.code()),
        Some("MissingParameter")
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap stand-in for the fuzz target: every byte value in every position class.
    let alphabet = b"%=&+.a1mber\xff\x00";
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..200 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                alphabet[(seed % alphabet.len() as u64) as usize]
            })
            .collect();
        if let Ok(p) = parse(&bytes, &bytes[..len / 2]) {
            let _ = p.members("a");
            let _ = p.member_structs("a");
        }
    }
}
