//! Load balancer policies (spec §1.19–1.20, §7, §8, §13): ELB's policy types, their
//! attributes, and what each does in clb once attached to a listener or an instance port.
//!
//! * `LBCookieStickinessPolicyType` / `AppCookieStickinessPolicyType` on an HTTP/HTTPS
//!   listener: sticky sessions (`crate::http::sticky`).
//! * `ProxyProtocolPolicyType` on an instance port: a PROXY v1 header first.
//! * `PublicKeyPolicyType` inside a `BackendServerAuthenticationPolicyType` on an
//!   instance port: the public keys an HTTPS/SSL instance there may present.
//! * `SSLNegotiationPolicyType` on an HTTPS/SSL listener: only a reference to the one
//!   policy rustls can honour (README, "TLS"); anything else is refused, never weakened.

use super::error::ApiError;
use crate::http::sticky;

/// A policy as created through the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDef {
    pub name: String,
    pub type_name: String,
    pub attributes: Vec<(String, String)>,
}

impl PolicyDef {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The stickiness this policy means, if it is a stickiness policy.
    pub fn sticky(&self) -> Option<sticky::Policy> {
        match self.type_name.as_str() {
            LB_COOKIE => Some(sticky::Policy::Duration {
                period: self
                    .attribute("CookieExpirationPeriod")
                    .and_then(|p| p.parse().ok())
                    .filter(|&p: &u64| p > 0),
            }),
            APP_COOKIE => Some(sticky::Policy::Application {
                cookie: self.attribute("CookieName").unwrap_or_default().to_string(),
            }),
            _ => None,
        }
    }
}

pub const LB_COOKIE: &str = "LBCookieStickinessPolicyType";
pub const APP_COOKIE: &str = "AppCookieStickinessPolicyType";
pub const PROXY_PROTOCOL: &str = "ProxyProtocolPolicyType";
pub const PUBLIC_KEY: &str = "PublicKeyPolicyType";
pub const BACKEND_AUTH: &str = "BackendServerAuthenticationPolicyType";
pub const SSL_NEGOTIATION: &str = "SSLNegotiationPolicyType";

/// One attribute of a policy type: name, type, cardinality, description.
pub struct AttributeType {
    pub name: &'static str,
    pub type_name: &'static str,
    pub cardinality: &'static str,
    pub description: &'static str,
}

pub struct PolicyType {
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttributeType],
}

/// DescribeLoadBalancerPolicyTypes (spec §1.20).
pub const TYPES: &[PolicyType] = &[
    PolicyType {
        name: PROXY_PROTOCOL,
        description: "Policy that controls whether to include the IP address and port of the originating request for TCP messages. This policy operates on TCP/SSL listeners only",
        attributes: &[AttributeType {
            name: "ProxyProtocol",
            type_name: "Boolean",
            cardinality: "ONE",
            description: "Enable proxy protocol",
        }],
    },
    PolicyType {
        name: PUBLIC_KEY,
        description: "Policy containing a list of public keys to accept when authenticating the back-end server(s). This policy cannot be applied directly to back-end servers or listeners but must be part of a BackendServerAuthenticationPolicyType.",
        attributes: &[AttributeType {
            name: "PublicKey",
            type_name: "String",
            cardinality: "ONE",
            description: "A public key (base64 DER SubjectPublicKeyInfo)",
        }],
    },
    PolicyType {
        name: APP_COOKIE,
        description: "Stickiness policy with session lifetimes controlled by the lifetime of the application-generated cookie. This policy can be associated only with HTTP/HTTPS listeners.",
        attributes: &[AttributeType {
            name: "CookieName",
            type_name: "String",
            cardinality: "ONE",
            description: "The name of the application cookie",
        }],
    },
    PolicyType {
        name: LB_COOKIE,
        description: "Stickiness policy with session lifetimes controlled by the browser (user-agent) or a specified expiration period. This policy can be associated only with HTTP/HTTPS listeners.",
        attributes: &[AttributeType {
            name: "CookieExpirationPeriod",
            type_name: "Long",
            cardinality: "ZERO_OR_ONE",
            description: "Seconds the stickiness cookie lives; none: a browser-session cookie",
        }],
    },
    PolicyType {
        name: SSL_NEGOTIATION,
        description: "Listener policy that defines the ciphers and protocols that will be accepted by the load balancer. This policy can be associated only with HTTPS/SSL listeners. clb honours only a reference to ELBSecurityPolicy-TLS-1-2-2017-01 (rustls).",
        attributes: &[AttributeType {
            name: "Reference-Security-Policy",
            type_name: "String",
            cardinality: "ZERO_OR_ONE",
            description: "A predefined security policy",
        }],
    },
    PolicyType {
        name: BACKEND_AUTH,
        description: "Policy that controls authentication to back-end server(s) and contains one or more policies, such as an instance of a PublicKeyPolicyType. This policy can be associated only with back-end servers that are using HTTPS/SSL.",
        attributes: &[AttributeType {
            name: "PublicKeyPolicyName",
            type_name: "PolicyName",
            cardinality: "ONE_OR_MORE",
            description: "The name of a PublicKeyPolicyType policy",
        }],
    },
];

/// Checks a new policy's type and attributes against `existing` ones (of the same load
/// balancer), the way ELB does.
pub fn validate(def: &PolicyDef, existing: &[PolicyDef]) -> Result<(), ApiError> {
    let Some(kind) = TYPES.iter().find(|t| t.name == def.type_name) else {
        return Err(ApiError::policy_type_not_found(format!(
            "There is no policy type named {}",
            def.type_name
        )));
    };
    for (name, _) in &def.attributes {
        if !kind
            .attributes
            .iter()
            .any(|a| a.name.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::invalid_configuration(format!(
                "{} has no attribute {name}",
                kind.name
            )));
        }
    }
    let bad = |why: String| Err(ApiError::invalid_configuration(why));
    match kind.name {
        PROXY_PROTOCOL => match def.attribute("ProxyProtocol") {
            Some(v) if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") => Ok(()),
            _ => bad("ProxyProtocol must be true or false".into()),
        },
        PUBLIC_KEY => match def.attribute("PublicKey").map(decode_public_key) {
            Some(Some(_)) => Ok(()),
            _ => bad("PublicKey must be a base64 DER SubjectPublicKeyInfo".into()),
        },
        APP_COOKIE => match def.attribute("CookieName") {
            Some(name) if sticky::parse_policy(&format!("app:{name}")).is_ok() => Ok(()),
            _ => bad("CookieName must be a cookie name".into()),
        },
        LB_COOKIE => match def.attribute("CookieExpirationPeriod") {
            None => Ok(()),
            Some(p) if p.parse::<u64>().is_ok() => Ok(()),
            Some(p) => bad(format!(
                "CookieExpirationPeriod '{p}' must be a whole number"
            )),
        },
        SSL_NEGOTIATION => match def.attribute("Reference-Security-Policy") {
            Some(name) => crate::tls::check_policy(name)
                .map_err(|why| ApiError::invalid_configuration(format!("{name}: {why}"))),
            None => bad(
                "clb supports SSL negotiation policies only as Reference-Security-Policy=\
                 ELBSecurityPolicy-TLS-1-2-2017-01 (rustls has no TLS 1.0/1.1 or CBC suites)"
                    .into(),
            ),
        },
        BACKEND_AUTH => {
            let names: Vec<&str> = def
                .attributes
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("PublicKeyPolicyName"))
                .map(|(_, v)| v.as_str())
                .collect();
            if names.is_empty() {
                return bad("at least one PublicKeyPolicyName is needed".into());
            }
            for name in names {
                if !existing
                    .iter()
                    .any(|p| p.name == name && p.type_name == PUBLIC_KEY)
                {
                    return Err(ApiError::policy_not_found(format!(
                        "There is no PublicKeyPolicyType policy named {name}"
                    )));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A `PublicKey` attribute (base64 of a DER SubjectPublicKeyInfo, no PEM armour).
pub fn decode_public_key(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A DER SEQUENCE, at least.
    (out.len() > 10 && out[0] == 0x30).then_some(out)
}

/// Which listener protocols a policy type may be attached to; `None`: not to listeners.
pub fn fits_listener(type_name: &str, protocol: crate::config::Protocol) -> bool {
    match type_name {
        LB_COOKIE | APP_COOKIE => protocol.is_http(),
        SSL_NEGOTIATION => protocol.is_tls(),
        _ => false,
    }
}

/// Whether a policy type may be attached to an instance port.
pub fn fits_backend(type_name: &str) -> bool {
    matches!(type_name, PROXY_PROTOCOL | BACKEND_AUTH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn def(type_name: &str, attributes: &[(&str, &str)]) -> PolicyDef {
        PolicyDef {
            name: "p".into(),
            type_name: type_name.into(),
            attributes: attributes
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn attributes_are_checked_per_type() {
        assert!(validate(&def(LB_COOKIE, &[("CookieExpirationPeriod", "60")]), &[]).is_ok());
        assert!(validate(&def(LB_COOKIE, &[("CookieExpirationPeriod", "x")]), &[]).is_err());
        assert!(validate(&def(APP_COOKIE, &[("CookieName", "JSESSIONID")]), &[]).is_ok());
        assert!(validate(&def(APP_COOKIE, &[]), &[]).is_err());
        assert!(validate(&def(PROXY_PROTOCOL, &[("ProxyProtocol", "true")]), &[]).is_ok());
        assert!(validate(&def(PROXY_PROTOCOL, &[("Other", "true")]), &[]).is_err());
        let e = validate(&def("NoSuchType", &[]), &[]).unwrap_err();
        assert_eq!(e.code, "PolicyTypeNotFound");
        let e = validate(&def(BACKEND_AUTH, &[("PublicKeyPolicyName", "k")]), &[]).unwrap_err();
        assert_eq!(e.code, "PolicyNotFound");
        let ssl = def(
            SSL_NEGOTIATION,
            &[("Reference-Security-Policy", "ELBSecurityPolicy-2016-08")],
        );
        assert!(validate(&ssl, &[]).unwrap_err().message.contains("rustls"));
    }

    #[test]
    fn public_keys_decode_from_base64_der() {
        let generated = rcgen::KeyPair::generate().unwrap();
        let b64 = generated
            .public_key_pem()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>();
        let der = decode_public_key(&b64).unwrap();
        // Re-encoded by rustls' own PEM reader: the same DER.
        let pem = rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(
            generated.public_key_pem().as_bytes(),
        )
        .unwrap();
        assert_eq!(der, pem.as_ref());
        assert_eq!(decode_public_key("not base64!"), None);
    }
}
