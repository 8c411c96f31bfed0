//! `--cluster` and `--cluster-prefix`: where the shared model lives when several clb
//! nodes serve the same load balancers (the store in crate::cluster::store).

/// The prefix every key of this cluster starts with, unless `--cluster-prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "/clb/";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStore {
    /// etcd v3 endpoints as given, `http://host:port` each (checked at parse time).
    pub endpoints: Vec<String>,
    /// Starts and ends with `/`.
    pub prefix: String,
}

/// Checks a `--cluster-prefix`: `/`, then printable ASCII without spaces, ending in `/`.
pub fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    let printable = prefix.bytes().all(|b| b.is_ascii_graphic());
    if prefix.starts_with('/') && prefix.ends_with('/') && printable && prefix.len() <= 256 {
        Ok(())
    } else {
        Err("must start and end with '/' and hold printable ASCII without spaces (at most 256)")
    }
}
