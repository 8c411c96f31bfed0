//! The policy actions (spec §1.19–1.20): creating, attaching, describing and deleting
//! ELB's policies. What each policy type does is `control::policies`.

use super::{port, ApiError, Model, Params, PolicyDef, Xml};
use crate::control::policies;

/// Wraps a result element in the action's answer document.
pub(super) type Answer<'a> = dyn Fn(&dyn Fn(&mut Xml)) -> String + 'a;

/// Runs one of the eight policy actions; `ok` wraps a result body in the answer.
pub(super) fn run(
    model: &mut Model,
    params: &Params,
    action: &str,
    ok: &Answer<'_>,
) -> Result<String, ApiError> {
    match action {
        "CreateLoadBalancerPolicy" => {
            let attributes = params
                .member_structs("PolicyAttributes")
                .iter()
                .map(|m| {
                    Ok((
                        m.required("AttributeName")?.to_string(),
                        m.get("AttributeValue").unwrap_or("").to_string(),
                    ))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            let def = PolicyDef {
                name: params.required("PolicyName")?.to_string(),
                type_name: params.required("PolicyTypeName")?.to_string(),
                attributes,
            };
            model.create_policy(params.required("LoadBalancerName")?, def)?;
            Ok(ok(&|_| {}))
        }
        "CreateLBCookieStickinessPolicy" | "CreateAppCookieStickinessPolicy" => {
            let (type_name, attributes) = if action == "CreateLBCookieStickinessPolicy" {
                let period = params
                    .get("CookieExpirationPeriod")
                    .map(|p| vec![("CookieExpirationPeriod".to_string(), p.to_string())]);
                (policies::LB_COOKIE, period.unwrap_or_default())
            } else {
                let cookie = params.required("CookieName")?;
                (
                    policies::APP_COOKIE,
                    vec![("CookieName".to_string(), cookie.to_string())],
                )
            };
            let def = PolicyDef {
                name: params.required("PolicyName")?.to_string(),
                type_name: type_name.to_string(),
                attributes,
            };
            model.create_policy(params.required("LoadBalancerName")?, def)?;
            Ok(ok(&|_| {}))
        }
        "DeleteLoadBalancerPolicy" => {
            model.delete_policy(
                params.required("LoadBalancerName")?,
                params.required("PolicyName")?,
            )?;
            Ok(ok(&|_| {}))
        }
        "SetLoadBalancerPoliciesOfListener" => {
            let port = port("LoadBalancerPort", params.required("LoadBalancerPort")?)?;
            let names = policy_names(params);
            model.set_listener_policies(params.required("LoadBalancerName")?, port, &names)?;
            Ok(ok(&|_| {}))
        }
        "SetLoadBalancerPoliciesForBackendServer" => {
            let port = port("InstancePort", params.required("InstancePort")?)?;
            let names = policy_names(params);
            model.set_backend_policies(params.required("LoadBalancerName")?, port, &names)?;
            Ok(ok(&|_| {}))
        }
        "DescribeLoadBalancerPolicies" => {
            let wanted = policy_names(params);
            let defs: Vec<PolicyDef> = match params.get("LoadBalancerName") {
                Some(name) => model.lb(name)?.policies.clone(),
                None => vec![predefined_ssl_policy()],
            };
            for name in &wanted {
                if !defs.iter().any(|p| p.name == *name) {
                    return Err(ApiError::policy_not_found(format!(
                        "There is no policy named {name}"
                    )));
                }
            }
            Ok(ok(&|x| {
                x.open("PolicyDescriptions");
                for def in defs
                    .iter()
                    .filter(|p| wanted.is_empty() || wanted.contains(&p.name))
                {
                    x.open("member");
                    x.leaf("PolicyName", &def.name);
                    x.leaf("PolicyTypeName", &def.type_name);
                    x.open("PolicyAttributeDescriptions");
                    for (name, value) in &def.attributes {
                        x.open("member");
                        x.leaf("AttributeName", name);
                        x.leaf("AttributeValue", value);
                        x.close("member");
                    }
                    x.close("PolicyAttributeDescriptions");
                    x.close("member");
                }
                x.close("PolicyDescriptions");
            }))
        }
        "DescribeLoadBalancerPolicyTypes" => {
            let wanted: Vec<&str> = params.members("PolicyTypeNames");
            for name in &wanted {
                if !policies::TYPES.iter().any(|t| t.name == *name) {
                    return Err(ApiError::policy_type_not_found(format!(
                        "There is no policy type named {name}"
                    )));
                }
            }
            Ok(ok(&|x| {
                x.open("PolicyTypeDescriptions");
                for t in policies::TYPES
                    .iter()
                    .filter(|t| wanted.is_empty() || wanted.contains(&t.name))
                {
                    x.open("member");
                    x.leaf("PolicyTypeName", t.name);
                    x.leaf("Description", t.description);
                    x.open("PolicyAttributeTypeDescriptions");
                    for a in t.attributes {
                        x.open("member");
                        x.leaf("AttributeName", a.name);
                        x.leaf("AttributeType", a.type_name);
                        x.leaf("Cardinality", a.cardinality);
                        x.leaf("Description", a.description);
                        x.close("member");
                    }
                    x.close("PolicyAttributeTypeDescriptions");
                    x.close("member");
                }
                x.close("PolicyTypeDescriptions");
            }))
        }
        other => Err(ApiError::invalid_action(format!(
            "{other} is not a policy action"
        ))),
    }
}

fn policy_names(params: &Params) -> Vec<String> {
    params
        .members("PolicyNames")
        .into_iter()
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

/// What DescribeLoadBalancerPolicies lists without a load balancer: the predefined
/// security policy clb honours, as ELB describes it.
fn predefined_ssl_policy() -> PolicyDef {
    let on = |name: &str| (name.to_string(), "true".to_string());
    PolicyDef {
        name: crate::tls::DEFAULT_POLICY.to_string(),
        type_name: policies::SSL_NEGOTIATION.to_string(),
        attributes: vec![
            on("Protocol-TLSv1.2"),
            on("Server-Defined-Cipher-Order"),
            on("ECDHE-ECDSA-AES128-GCM-SHA256"),
            on("ECDHE-RSA-AES128-GCM-SHA256"),
            on("ECDHE-ECDSA-AES256-GCM-SHA384"),
            on("ECDHE-RSA-AES256-GCM-SHA384"),
        ],
    }
}
