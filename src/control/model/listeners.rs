//! Listeners of a load balancer: adding them (spec §1.2–1.6: protocols that mix, one
//! listener per port, identical ones accepted again), a secure listener's certificate,
//! and deleting them with the policies on their ports.

use super::{LbState, Model, MAX_LISTENERS};
use crate::config::Listener;
use crate::control::error::ApiError;

impl Model {
    pub fn create_listeners(
        &mut self,
        name: &str,
        listeners: Vec<Listener>,
    ) -> Result<(), ApiError> {
        let address = self.listen_address(self.lb(name)?);
        let ports: Vec<u16> = listeners.iter().map(|l| l.port).collect();
        self.check_ports(name, address, &ports)?;
        add_listeners(self.lb_mut(name)?, listeners)
    }

    /// Records a secure listener's new certificate id (the control plane then loads the
    /// `--cert` files again, so replaced files take effect: spec §13.17).
    pub fn set_listener_certificate(
        &mut self,
        name: &str,
        port: u16,
        id: &str,
    ) -> Result<(), ApiError> {
        let lb = self.lb_mut(name)?;
        let Some(listener) = lb.listeners.iter_mut().find(|l| l.port == port) else {
            return Err(ApiError::listener_not_found(format!(
                "There is no listener on port {port}"
            )));
        };
        if !listener.protocol.is_tls() {
            return Err(ApiError::invalid_configuration(format!(
                "The listener on port {port} is {}: only HTTPS and SSL listeners have a certificate",
                listener.protocol.as_str()
            )));
        }
        if id.is_empty() {
            return Err(ApiError::validation("SSLCertificateId must not be empty"));
        }
        listener.ssl_certificate_id = Some(id.to_string());
        Ok(())
    }

    pub fn delete_listeners(&mut self, name: &str, ports: &[u16]) -> Result<(), ApiError> {
        let lb = self.lb_mut(name)?;
        if let Some(port) = ports
            .iter()
            .find(|p| !lb.listeners.iter().any(|l| l.port == **p))
        {
            return Err(ApiError::listener_not_found(format!(
                "There is no listener on port {port}"
            )));
        }
        lb.listeners.retain(|l| !ports.contains(&l.port));
        lb.listener_policies.retain(|(p, _)| !ports.contains(p));
        Ok(())
    }
}

/// Spec §1.2–1.6: protocols that mix, one listener per port (identical ones are accepted again).
pub(super) fn add_listeners(lb: &mut LbState, listeners: Vec<Listener>) -> Result<(), ApiError> {
    let mut added = lb.listeners.clone();
    for listener in listeners {
        if listener.protocol.is_http() != listener.instance_protocol.is_http() {
            return Err(ApiError::validation(format!(
                "Listener on port {}: {} cannot forward to {}",
                listener.port,
                listener.protocol.as_str(),
                listener.instance_protocol.as_str()
            )));
        }
        match added.iter().find(|l| l.port == listener.port) {
            Some(existing) if *existing == listener => {}
            Some(_) => {
                return Err(ApiError::duplicate_listener(format!(
                    "A listener already exists for {} with LoadBalancerPort {}, but with a different InstancePort, Protocol, or SSLCertificateId",
                    lb.name, listener.port
                )))
            }
            None => added.push(listener),
        }
    }
    if added.len() > MAX_LISTENERS {
        return Err(ApiError::invalid_configuration(format!(
            "Exceeded the limit of {MAX_LISTENERS} listeners"
        )));
    }
    lb.listeners = added;
    Ok(())
}
