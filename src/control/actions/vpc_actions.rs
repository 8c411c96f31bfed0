//! The subnet and security group actions (spec §19.3–19.4), and the part of
//! CreateLoadBalancer that reads `Subnets` and `SecurityGroups`.

use super::policy_actions::Answer;
use super::{string_list, ApiError, Listener, Model, Params};
use crate::control::model::vpc::CreateRequest;

/// Runs AttachLoadBalancerToSubnets, DetachLoadBalancerFromSubnets or
/// ApplySecurityGroupsToLoadBalancer; each answers the list now in force.
pub(super) fn run(
    model: &mut Model,
    params: &Params,
    action: &str,
    ok: &Answer<'_>,
) -> Result<String, ApiError> {
    let name = params.required("LoadBalancerName")?;
    if action == "ApplySecurityGroupsToLoadBalancer" {
        let groups = list(params, "SecurityGroups")?;
        let now = model.apply_security_groups(name, &groups)?;
        return Ok(ok(&|x| string_list(x, "SecurityGroups", &now)));
    }
    let subnets = list(params, "Subnets")?;
    let now = if action == "AttachLoadBalancerToSubnets" {
        model.attach_subnets(name, &subnets)?
    } else {
        model.detach_subnets(name, &subnets)?
    };
    Ok(ok(&|x| string_list(x, "Subnets", &now)))
}

/// A required, non-empty list parameter.
fn list(params: &Params, name: &str) -> Result<Vec<String>, ApiError> {
    let items: Vec<String> = params.members(name).into_iter().map(String::from).collect();
    if items.is_empty() {
        return Err(ApiError::missing_parameter(name));
    }
    Ok(items)
}

/// CreateLoadBalancer's `Subnets` and `SecurityGroups`.
pub(super) struct CreateVpc {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
}

impl CreateVpc {
    pub fn read(params: &Params) -> CreateVpc {
        let strings =
            |name| -> Vec<String> { params.members(name).into_iter().map(String::from).collect() };
        CreateVpc {
            subnets: strings("Subnets"),
            security_groups: strings("SecurityGroups"),
        }
    }

    /// The call repeats an existing load balancer's creation (succeeds unchanged), or
    /// names a new one (`false`); a different configuration is an error.
    pub fn is_repeat(
        &self,
        model: &Model,
        name: &str,
        listeners: &[Listener],
        zones: &[String],
        scheme: &str,
    ) -> Result<bool, ApiError> {
        model.is_repeat(&CreateRequest {
            name,
            listeners,
            zones,
            subnets: &self.subnets,
            scheme,
            security_groups: &self.security_groups,
        })
    }

    /// Attaches the subnets and security groups to the load balancer just created.
    pub fn attach(&self, model: &mut Model, name: &str) -> Result<(), ApiError> {
        if !self.subnets.is_empty() {
            model.attach_subnets(name, &self.subnets)?;
        }
        if !self.security_groups.is_empty() {
            model.apply_security_groups(name, &self.security_groups)?;
        }
        Ok(())
    }
}
