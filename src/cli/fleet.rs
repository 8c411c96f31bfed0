//! The fleet flags: where state lives (`--cluster`), what answers for the fleet
//! (`--dns`), and which addresses load balancers listen on (`--address-pool`).

use super::{flag_error, CliError};
use crate::config::address_pool::AddressPool;
use getopts::Matches;
use std::net::SocketAddr;

/// `--dns ADDR:PORT` and `--dns-domain DOMAIN` (README "DNS").
pub(super) fn dns(m: &Matches) -> Result<(Option<SocketAddr>, String), CliError> {
    let addr = match m.opt_str("dns") {
        None => None,
        Some(text) => Some(text.parse().map_err(|_| {
            flag_error(
                "dns",
                &text,
                "must be an address and port, e.g. 127.0.0.1:5353 or [::1]:53",
            )
        })?),
    };
    let domain = match m.opt_str("dns-domain") {
        None => crate::dns::zone::DEFAULT_DOMAIN.to_string(),
        Some(text) => crate::dns::zone::parse_domain(&text)
            .map_err(|why| flag_error("dns-domain", &text, &why))?,
    };
    Ok((addr, domain))
}

/// `--address-pool`: with a pool every load balancer has its own address, so `--bind`
/// (the one address they would all share) cannot be given too.
pub(super) fn address_pool(m: &Matches) -> Result<Option<AddressPool>, CliError> {
    let Some(text) = m.opt_str("address-pool") else {
        return Ok(None);
    };
    if m.opt_present("bind") {
        return Err(flag_error(
            "address-pool",
            &text,
            "cannot be combined with --bind: with a pool each load balancer listens on its own address",
        ));
    }
    AddressPool::parse(&text)
        .map(Some)
        .map_err(|why| flag_error("address-pool", &text, &why))
}

/// `--cluster ENDPOINTS` and `--cluster-prefix PREFIX` (README "State in etcd").
pub(super) fn cluster_store(
    m: &Matches,
    has_state: bool,
) -> Result<Option<crate::config::cluster::ClusterStore>, CliError> {
    use crate::config::cluster::{check_prefix, ClusterStore, DEFAULT_PREFIX};
    let prefix = m.opt_str("cluster-prefix");
    let Some(list) = m.opt_str("cluster") else {
        return match prefix {
            Some(p) => Err(flag_error("cluster-prefix", &p, "needs --cluster")),
            None => Ok(None),
        };
    };
    if has_state {
        // Two stores would disagree about which one holds the model.
        return Err(CliError(
            "--cluster and --state exclude each other: with --cluster the model lives in etcd"
                .into(),
        ));
    }
    let endpoints: Vec<String> = list.split(',').map(|e| e.trim().to_string()).collect();
    if endpoints.iter().any(|e| e.is_empty()) {
        return Err(flag_error(
            "cluster",
            &list,
            "expected http://HOST:PORT[,http://HOST:PORT...]",
        ));
    }
    crate::cluster::etcd::Etcd::new(&endpoints, std::time::Duration::from_secs(1)).map_err(
        |e| match e {
            crate::cluster::etcd::EtcdError::Protocol(why) => flag_error("cluster", &list, &why),
            other => flag_error("cluster", &list, &other.to_string()),
        },
    )?;
    let prefix = prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string());
    check_prefix(&prefix).map_err(|why| flag_error("cluster-prefix", &prefix, why))?;
    Ok(Some(ClusterStore { endpoints, prefix }))
}
