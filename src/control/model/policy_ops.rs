//! Policies on the model (spec §1.19–1.20): creating, attaching and deleting them with
//! ELB's rules, and what the routing picture takes from them (proxy protocol ports and
//! pinned back-end keys). The policy types themselves are `control::policies`.

use super::{ApiError, LbState, Model, MAX_POLICIES};
use crate::control::policies::{self, PolicyDef};

impl Model {
    /// CreateLoadBalancerPolicy (and the two stickiness shortcuts).
    pub fn create_policy(&mut self, name: &str, def: PolicyDef) -> Result<(), ApiError> {
        let lb = self.lb_mut(name)?;
        if lb.policies.iter().any(|p| p.name == def.name) {
            return Err(ApiError::duplicate_policy_name(format!(
                "Policy {} already exists for {}",
                def.name, lb.name
            )));
        }
        if def.name.is_empty()
            || def.name.starts_with("ELBSecurityPolicy-")
            || def.name.starts_with("ELBSample-")
        {
            return Err(ApiError::validation(format!(
                "Policy name '{}' is empty or reserved",
                def.name
            )));
        }
        if lb.policies.len() >= MAX_POLICIES {
            return Err(ApiError::too_many_policies(format!(
                "{} already has {MAX_POLICIES} policies",
                lb.name
            )));
        }
        policies::validate(&def, &lb.policies)?;
        lb.policies.push(def);
        Ok(())
    }

    /// DeleteLoadBalancerPolicy: only a policy nothing uses.
    pub fn delete_policy(&mut self, name: &str, policy: &str) -> Result<(), ApiError> {
        let lb = self.lb_mut(name)?;
        lb.policy(policy)?;
        let attached = lb
            .listener_policies
            .iter()
            .chain(lb.backend_policies.iter())
            .any(|(_, names)| names.iter().any(|n| n == policy));
        let referenced = lb.policies.iter().any(|p| {
            p.type_name == policies::BACKEND_AUTH && p.attributes.iter().any(|(_, v)| v == policy)
        });
        if attached || referenced {
            return Err(ApiError::invalid_configuration(format!(
                "Policy {policy} is in use and cannot be deleted"
            )));
        }
        lb.policies.retain(|p| p.name != policy);
        Ok(())
    }

    /// SetLoadBalancerPoliciesOfListener: replaces the listener's set (empty: none).
    pub fn set_listener_policies(
        &mut self,
        name: &str,
        port: u16,
        names: &[String],
    ) -> Result<(), ApiError> {
        let lb = self.lb_mut(name)?;
        let Some(listener) = lb.listeners.iter().find(|l| l.port == port) else {
            return Err(ApiError::listener_not_found(format!(
                "There is no listener on port {port}"
            )));
        };
        let mut sticky = 0;
        for policy in names {
            let def = lb.policy(policy)?;
            if !policies::fits_listener(&def.type_name, listener.protocol) {
                return Err(ApiError::invalid_configuration(format!(
                    "{} policies cannot be set on a {} listener",
                    def.type_name,
                    listener.protocol.as_str()
                )));
            }
            sticky += usize::from(def.sticky().is_some());
        }
        if sticky > 1 {
            return Err(ApiError::invalid_configuration(
                "A listener can have only one stickiness policy",
            ));
        }
        lb.listener_policies.retain(|(p, _)| *p != port);
        lb.listener_policies.push((port, names.to_vec()));
        Ok(())
    }

    /// SetLoadBalancerPoliciesForBackendServer: replaces the instance port's set.
    pub fn set_backend_policies(
        &mut self,
        name: &str,
        port: u16,
        names: &[String],
    ) -> Result<(), ApiError> {
        let lb = self.lb_mut(name)?;
        for policy in names {
            let def = lb.policy(policy)?;
            if !policies::fits_backend(&def.type_name) {
                return Err(ApiError::invalid_configuration(format!(
                    "{} policies cannot be set on an instance port",
                    def.type_name
                )));
            }
        }
        lb.backend_policies.retain(|(p, _)| *p != port);
        if !names.is_empty() {
            lb.backend_policies.push((port, names.to_vec()));
        }
        Ok(())
    }
}

impl LbState {
    /// The policy named `name`, or ELB's PolicyNotFound.
    pub fn policy(&self, name: &str) -> Result<&PolicyDef, ApiError> {
        self.policies
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ApiError::policy_not_found(format!("There is no policy named {name}")))
    }

    /// The attached policies (of instance port `port`) of one type.
    fn backend_policies_of(&self, port: u16, type_name: &str) -> Vec<&PolicyDef> {
        self.backend_policies
            .iter()
            .filter(|(p, _)| *p == port)
            .flat_map(|(_, names)| names.iter())
            .filter_map(|n| self.policies.iter().find(|p| p.name == *n))
            .filter(|p| p.type_name == type_name)
            .collect()
    }

    /// `--proxy-protocol` ports, plus instance ports with a ProxyProtocol policy.
    pub(super) fn proxy_protocol_with_policies(
        &self,
    ) -> Vec<(u16, crate::tcp::proxy_protocol::Version)> {
        let mut ports = self.proxy_protocol.clone();
        for (port, _) in &self.backend_policies {
            let on = self
                .backend_policies_of(*port, policies::PROXY_PROTOCOL)
                .iter()
                .any(|p| p.attribute("ProxyProtocol") == Some("true"));
            if on && !ports.iter().any(|(p, _)| p == port) {
                ports.push((*port, crate::tcp::proxy_protocol::Version::V1));
            }
        }
        ports
    }

    /// Public keys pinned per instance port by BackendServerAuthentication policies.
    pub(super) fn backend_pins(&self) -> Vec<(u16, Vec<Vec<u8>>)> {
        let mut pins = Vec::new();
        for (port, _) in &self.backend_policies {
            let keys: Vec<Vec<u8>> = self
                .backend_policies_of(*port, policies::BACKEND_AUTH)
                .iter()
                .flat_map(|auth| {
                    auth.attributes
                        .iter()
                        .filter(|(n, _)| n.eq_ignore_ascii_case("PublicKeyPolicyName"))
                        .map(|(_, v)| v.clone())
                })
                .filter_map(|name| self.policies.iter().find(|p| p.name == name))
                .filter_map(|p| {
                    p.attribute("PublicKey")
                        .and_then(policies::decode_public_key)
                })
                .collect();
            if !keys.is_empty() {
                pins.push((*port, keys));
            }
        }
        pins
    }
}
