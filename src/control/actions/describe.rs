//! The XML elements DescribeLoadBalancers and friends answer with, in botocore's
//! output shapes.

use super::*;
use crate::control::policies;

pub(super) fn describe_lb(x: &mut Xml, lb: &LbState, domain: &str) {
    x.leaf("LoadBalancerName", &lb.name);
    let name = dns_name(domain, &lb.name);
    x.leaf("DNSName", &name);
    // ELB's is the zone a Route 53 alias points into; ours is the name itself, which a
    // CNAME can point at.
    x.leaf("CanonicalHostedZoneName", &name);
    x.leaf("CanonicalHostedZoneNameID", "CLB0SELFHOSTED");
    x.open("ListenerDescriptions");
    for l in &lb.listeners {
        x.open("member");
        x.open("Listener");
        x.leaf("Protocol", l.protocol.as_str());
        x.leaf("LoadBalancerPort", &l.port.to_string());
        x.leaf("InstanceProtocol", l.instance_protocol.as_str());
        x.leaf("InstancePort", &l.instance_port.to_string());
        if let Some(id) = &l.ssl_certificate_id {
            x.leaf("SSLCertificateId", id);
        }
        x.close("Listener");
        let attached = lb
            .listener_policies
            .iter()
            .find(|(port, _)| *port == l.port)
            .map(|(_, names)| names.clone())
            .unwrap_or_default();
        string_list(x, "PolicyNames", &attached);
        x.close("member");
    }
    x.close("ListenerDescriptions");
    x.open("Policies");
    x.open("AppCookieStickinessPolicies");
    for p in lb
        .policies
        .iter()
        .filter(|p| p.type_name == policies::APP_COOKIE)
    {
        x.open("member");
        x.leaf("PolicyName", &p.name);
        x.leaf("CookieName", p.attribute("CookieName").unwrap_or(""));
        x.close("member");
    }
    x.close("AppCookieStickinessPolicies");
    x.open("LBCookieStickinessPolicies");
    for p in lb
        .policies
        .iter()
        .filter(|p| p.type_name == policies::LB_COOKIE)
    {
        x.open("member");
        x.leaf("PolicyName", &p.name);
        if let Some(period) = p.attribute("CookieExpirationPeriod") {
            x.leaf("CookieExpirationPeriod", period);
        }
        x.close("member");
    }
    x.close("LBCookieStickinessPolicies");
    let others: Vec<String> = lb
        .policies
        .iter()
        .filter(|p| p.sticky().is_none())
        .map(|p| p.name.clone())
        .collect();
    string_list(x, "OtherPolicies", &others);
    x.close("Policies");
    x.open("BackendServerDescriptions");
    for (port, names) in &lb.backend_policies {
        x.open("member");
        x.leaf("InstancePort", &port.to_string());
        string_list(x, "PolicyNames", names);
        x.close("member");
    }
    x.close("BackendServerDescriptions");
    string_list(x, "AvailabilityZones", &lb.zones);
    string_list(x, "Subnets", &lb.subnets);
    instance_list(x, &lb.registered_ids());
    describe_health_check(x, &lb.health_check);
    x.open("SourceSecurityGroup");
    x.leaf("OwnerAlias", "clb");
    x.leaf("GroupName", "default");
    x.close("SourceSecurityGroup");
    string_list(x, "SecurityGroups", &lb.security_groups);
    x.leaf("CreatedTime", &iso8601(lb.created));
    x.leaf("Scheme", &lb.scheme);
}

pub(super) fn describe_health_check(x: &mut Xml, check: &HealthCheck) {
    x.open("HealthCheck");
    x.leaf("Target", &check.target.to_string());
    x.leaf("Interval", &check.interval.to_string());
    x.leaf("Timeout", &check.timeout.to_string());
    x.leaf("UnhealthyThreshold", &check.unhealthy_threshold.to_string());
    x.leaf("HealthyThreshold", &check.healthy_threshold.to_string());
    x.close("HealthCheck");
}

pub(super) fn describe_attributes(x: &mut Xml, a: &Attributes) {
    let flag = |on: bool| if on { "true" } else { "false" };
    x.open("LoadBalancerAttributes");
    x.open("CrossZoneLoadBalancing");
    x.leaf("Enabled", flag(a.cross_zone));
    x.close("CrossZoneLoadBalancing");
    x.open("AccessLog");
    x.leaf("Enabled", "false");
    x.close("AccessLog");
    x.open("ConnectionDraining");
    x.leaf("Enabled", flag(a.draining));
    x.leaf("Timeout", &a.draining_timeout.to_string());
    x.close("ConnectionDraining");
    x.open("ConnectionSettings");
    x.leaf("IdleTimeout", &a.idle_timeout.to_string());
    x.close("ConnectionSettings");
    x.open("AdditionalAttributes");
    x.open("member");
    x.leaf("Key", "elb.http.desyncmitigationmode");
    x.leaf("Value", &a.desync_mode);
    x.close("member");
    x.close("AdditionalAttributes");
    x.close("LoadBalancerAttributes");
}

pub(super) fn instance_list(x: &mut Xml, ids: &[String]) {
    x.open("Instances");
    for id in ids {
        x.open("member");
        x.leaf("InstanceId", id);
        x.close("member");
    }
    x.close("Instances");
}

pub(super) fn instance_states(x: &mut Xml, rows: &[InstanceHealth]) {
    x.open("InstanceStates");
    for row in rows {
        x.open("member");
        x.leaf("InstanceId", &row.id);
        x.leaf("State", row.state);
        x.leaf("ReasonCode", row.reason_code);
        x.leaf("Description", row.description);
        x.close("member");
    }
    x.close("InstanceStates");
}

pub(super) fn string_list(x: &mut Xml, tag: &str, items: &[String]) {
    x.open(tag);
    for item in items {
        x.leaf("member", item);
    }
    x.close(tag);
}

/// The name `--dns` answers for (README "DNS"); under the default domain it also
/// resolves to loopback on most systems without it (RFC 6761 `.localhost`).
pub(super) fn dns_name(domain: &str, name: &str) -> String {
    crate::dns::zone::lb_name(domain, name)
}

/// `2013-05-24T21:15:31.280Z`, as ELB writes CreatedTime.
pub fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::calendar::civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}
