//! Starting clb: the model from the store (state file or etcd) and the flags, the topology built from
//! it, every listening socket bound, one worker thread per event loop, and the control
//! thread.
//!
//! Everything that can fail at start-up (a damaged state file, a name that does not
//! resolve, a port in use) fails here, before any thread starts, with an error that
//! names what failed.

use crate::backend::health::{InFlight, MAX_SLOTS};
use crate::config::Config;
use crate::control::model::addresses::Placement;
use crate::control::model::{LbState, Model};
use crate::control::plane::Plane;
use crate::control::server::{ControlHandle, Server};
use crate::control::sigv4::Credentials;
use crate::control::state::StateFile;
use crate::control::store::Store;
use crate::worker::{self, ListenError, Settings, Worker};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug)]
pub enum StartError {
    State(String),
    /// etcd (`--cluster`) could not be read or written at start.
    Cluster(String),
    Config(String),
    Listen(ListenError),
    Api(SocketAddr, io::Error),
    Thread(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::State(e) => write!(f, "state file {e}"),
            StartError::Cluster(e) => write!(f, "--cluster: {e}"),
            StartError::Config(e) => f.write_str(e),
            StartError::Listen(e) => e.fmt(f),
            StartError::Api(addr, e) => write!(f, "cannot listen on {addr} for the API: {e}"),
            StartError::Thread(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running clb: its worker threads and the control thread.
pub struct Running {
    /// What the load balancers looked like at start.
    pub load_balancers: Vec<LbState>,
    workers: Vec<JoinHandle<io::Result<()>>>,
    /// Serves the API until the process exits; never joined.
    _control_thread: JoinHandle<io::Result<()>>,
    /// The access-log thread, when `--access-log` is on (SIGUSR1 reopens its file).
    pub access_log: Option<std::sync::mpsc::Sender<crate::access_log::Message>>,
    /// Reaches the control thread (signals).
    pub control: ControlHandle,
}

pub fn start(config: &Config, credentials: Option<Credentials>) -> Result<Running, StartError> {
    let runtime = &config.runtime;
    let flags_lb = &config.load_balancer;
    let mut model = Model::new(flags_lb.instances.clone());
    model.subnet_map = runtime.subnets.clone();
    model.security_groups = runtime.security_groups.clone();
    model.placement = Placement::new(runtime.bind, runtime.address_pool.clone(), runtime.api);
    model.dns_domain = runtime.dns_domain.clone();
    if let Some(pool) = &runtime.address_pool {
        check_pool(pool).map_err(StartError::Config)?;
    }
    // One store or none; the watch follows etcd from the revision the model was loaded at.
    let mut watch_from = None;
    let (mut store, stored): (Option<Box<dyn Store>>, Vec<LbState>) =
        if let Some(cluster) = &runtime.cluster {
            let (store, lbs) = crate::cluster::start::open(cluster).map_err(StartError::Cluster)?;
            watch_from = Some((store.lb_prefix(), store.loaded_at() + 1));
            (Some(Box::new(store)), lbs)
        } else if let Some(path) = &runtime.state {
            let state = StateFile::new(path);
            let lbs = state.load().map_err(StartError::State)?;
            (Some(Box::new(state)), lbs)
        } else {
            (None, Vec::new())
        };
    if let (Some(cluster), Some(_)) = (&runtime.cluster, &runtime.address_pool) {
        // README "Running several nodes": this node's addresses from before a restart.
        model.placement.preferred =
            crate::cluster::start::saved_addresses(cluster, &runtime.node.name)
                .map_err(StartError::Cluster)?;
    }
    for lb in stored {
        let name = lb.name.clone();
        model.insert(lb).map_err(|e| {
            let at = store.as_ref().map(|s| s.describe()).unwrap_or_default();
            StartError::State(format!("{at}: load balancer {name}: {e}"))
        })?;
    }
    for (lb, id) in model.undefined_security_groups() {
        log::warn!(
            "load balancer {lb}: security group {id} is not defined by --security-group; \
             it admits no client until it is"
        );
    }
    // README: the state file's definition of the flags' load balancer wins once it has one.
    if model.lb(&flags_lb.name).is_ok() {
        let by = if runtime.cluster.is_some() {
            "etcd"
        } else {
            "the state file"
        };
        log::info!(
            "load balancer {}: defined by {by}; its flags are not applied",
            flags_lb.name
        );
    } else {
        model
            .insert(LbState::from_flags(flags_lb, config.draining))
            .map_err(|e| StartError::Config(format!("load balancer {}: {e}", flags_lb.name)))?;
        // README "State in etcd": the first node to start with it defines it for all.
        if let (Some(store), true) = (store.as_mut(), runtime.cluster.is_some()) {
            crate::cluster::start::publish_flags_lb(store.as_mut(), &model.lbs)
                .map_err(StartError::Cluster)?;
        }
    }
    model.placement.preferred.clear();
    let topology = Arc::new(
        model
            .topology()
            .map_err(|e| StartError::Config(e.to_string()))?,
    );
    let sockets = worker::bind_listeners(&topology, runtime.bind, runtime.workers)
        .map_err(StartError::Listen)?;
    let api = match runtime.api {
        Some(addr) => {
            Some(std::net::TcpListener::bind(addr).map_err(|e| StartError::Api(addr, e))?)
        }
        None => None,
    };

    let tls = if topology
        .listeners
        .iter()
        .any(|l| l.listener.protocol.is_tls())
    {
        Some(
            crate::tls::server_config(&runtime.certs, &runtime.ssl_policy)
                .map_err(|e| StartError::Config(e.to_string()))?,
        )
    } else {
        None
    };
    let access_log = match &runtime.access_log {
        None => None,
        Some(target) => Some(
            crate::access_log::start(target.clone())
                .map_err(|e| StartError::Config(format!("--access-log {target:?}: {e}")))?,
        ),
    };
    let allow = Arc::new(runtime.allow.clone());
    let sticky_key = match &runtime.cluster {
        Some(cluster) => {
            crate::cluster::start::sticky_key(cluster, fresh_key().map_err(StartError::Config)?)
                .map(crate::http::sticky::Key::new)
                .map_err(StartError::Cluster)?
        }
        None => sticky_key(runtime.state.as_deref()).map_err(StartError::Config)?,
    };
    let sticky_key = Arc::new(sticky_key);
    let backend_tls = crate::tls::backend::client_config(&runtime.backend_tls)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let dns = start_dns(runtime, &model)?;
    // README "Running several nodes": the last etcd step of a start comes before the
    // node serves a client. A start that etcd cannot complete is refused, never half
    // done; a later failure drops the registration (its lease is revoked).
    let joined = match &runtime.cluster {
        Some(cluster) => Some(join_before_serving(cluster, runtime, &model)?),
        None => None,
    };
    let mut threads = Vec::with_capacity(sockets.len() + 1);
    let mut handles = Vec::with_capacity(sockets.len());
    let mut in_flight = Vec::with_capacity(sockets.len());
    let (mut stats, mut desync) = (Vec::new(), Vec::new());
    for (id, listening) in sockets.into_iter().enumerate() {
        let counts = Arc::new(InFlight::new(MAX_SLOTS));
        let settings = Settings {
            max_connections: runtime.max_connections,
            workers: runtime.workers,
            health_unit: worker::health_unit_from_env(),
            splice: worker::splice_from_env(),
            header_timeout: runtime.header_timeout,
            desync_counts: Arc::new(Default::default()),
            stats: Arc::new(Default::default()),
            access_log: access_log.clone(),
            allow: allow.clone(),
            sticky_key: sticky_key.clone(),
            max_backend_connections: runtime.max_backend_connections,
            // Each worker is an "LB node" with its share of the queue.
            surge_queue: runtime.surge_queue.div_ceil(runtime.workers.max(1)),
            tls: tls.clone(),
            backend_tls: backend_tls.clone(),
            backend_tls_settings: runtime.backend_tls.clone(),
        };
        stats.push(settings.stats.clone());
        desync.push(settings.desync_counts.clone());
        let (worker, handle) =
            Worker::new(id, topology.clone(), listening, settings, counts.clone())
                .map_err(StartError::Thread)?;
        handles.push(handle);
        in_flight.push(counts);
        let thread = std::thread::Builder::new()
            .name(format!("clb-worker-{id}"))
            .spawn(move || worker.run())
            .map_err(StartError::Thread)?;
        threads.push(thread);
    }

    let load_balancers = model.lbs.clone();
    let ports = crate::control::plane::listen_addrs(&topology, runtime.bind).collect();
    let plane = Plane {
        model,
        topology,
        workers: handles,
        in_flight,
        bind: runtime.bind,
        store,
        ports,
        certs: runtime.certs.clone(),
        ssl_policy: runtime.ssl_policy.clone(),
        tls_ready: tls.is_some(),
        stats,
        desync,
        dns,
        nodes: vec![runtime.node.info()],
        this_node: runtime.node.name.clone(),
        membership: None,
        fleet_health: None,
        committer: None,
        pending: None,
    };
    let (mut server, control) = Server::new(plane, api, credentials).map_err(StartError::Thread)?;
    if let (Some(cluster), Some((prefix, from))) = (&runtime.cluster, watch_from) {
        let to_control = control.clone();
        crate::cluster::start::follow(cluster, prefix, from, move |remote| {
            to_control.send(crate::control::server::Event::Cluster(remote))
        })
        .map_err(StartError::Cluster)?;
    }
    // The live list goes to the control thread; the plane revokes the lease at SIGTERM.
    if let Some((fleet_health, registered)) = joined {
        let plane = server.plane_mut();
        plane.fleet_health = Some(fleet_health);
        plane.membership = Some(registered.follow_fleet(&control));
    }
    let control_thread = std::thread::Builder::new()
        .name("clb-control".to_string())
        .spawn(move || server.run())
        .map_err(StartError::Thread)?;
    Ok(Running {
        load_balancers,
        workers: threads,
        _control_thread: control_thread,
        control,
        access_log,
    })
}

impl Running {
    /// Waits for the workers: they stop after a shutdown (or if a poll fails).
    pub fn wait(self) -> io::Result<()> {
        for handle in self.workers {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => return Err(io::Error::other("a thread panicked")),
            }
        }
        Ok(())
    }
}

/// With `--cluster`: the other nodes' health views (README "Instance health across
/// nodes": transitions out, other views in) and this node's key on a lease, whose
/// threads start once the control thread can take the live list.
fn join_before_serving(
    cluster: &crate::config::cluster::ClusterStore,
    runtime: &crate::config::Runtime,
    model: &Model,
) -> Result<
    (
        crate::cluster::health::FleetHealth,
        crate::cluster::members::Registered,
    ),
    StartError,
> {
    let fleet_health =
        crate::cluster::health::start(cluster, &runtime.node.name).map_err(StartError::Cluster)?;
    let mut me = runtime.node.info();
    me.dns = dns_address(runtime);
    me.addresses = runtime.address_pool.as_ref().map(|_| model.own_addresses());
    let registered =
        crate::cluster::members::register(&cluster.endpoints, &cluster.prefix, &runtime.node, me)
            .map_err(StartError::Cluster)?;
    Ok((fleet_health, registered))
}

/// `--dns`: the server threads, answering from the model as it is at start; the
/// control thread republishes the zone after every change.
fn start_dns(
    runtime: &crate::config::Runtime,
    model: &Model,
) -> Result<Option<crate::dns::Feed>, StartError> {
    let Some(addr) = runtime.dns else {
        return Ok(None);
    };
    let mut nodes = live_nodes(runtime);
    let this_node = nodes.first().map(|n| n.name.clone()).unwrap_or_default();
    let ns_address = dns_address(runtime).unwrap_or(addr.ip());
    if runtime.cluster.is_some() {
        // In a fleet each node answering DNS is a name server of its own (NS per node).
        for me in &mut nodes {
            me.dns = Some(ns_address);
        }
    }
    let zone = crate::dns::DnsZone::build(
        &model.dns_domain,
        &model.lbs,
        &nodes,
        &this_node,
        ns_address,
    );
    let feed = crate::dns::Feed {
        published: crate::dns::Published::new(zone),
        nodes,
        this_node,
        ns_address,
    };
    crate::dns::server::start(addr, feed.published.clone())
        .map_err(|e| StartError::Config(e.to_string()))?;
    Ok(Some(feed))
}

/// Where this node's DNS server is reached (its glue record): the `--dns` address, or
/// the node's address when `--dns` listens on every address.
fn dns_address(runtime: &crate::config::Runtime) -> Option<std::net::IpAddr> {
    let addr = runtime.dns?;
    Some(if addr.ip().is_unspecified() {
        runtime.node.address
    } else {
        addr.ip()
    })
}

/// The fleet DNS answers with at start: this node alone (`--node`, `--node-address`), in
/// no particular zone, since a fleet of one serves every zone. With `--cluster`,
/// membership's list replaces it (`Plane::set_nodes`), zones and all.
fn live_nodes(runtime: &crate::config::Runtime) -> Vec<crate::config::node::NodeInfo> {
    let mut me = runtime.node.info();
    me.zone = String::new();
    vec![me]
}

/// A pool none of whose addresses this host can listen on is a mistake to report now,
/// not at the first CreateLoadBalancer.
fn check_pool(pool: &crate::config::address_pool::AddressPool) -> Result<(), String> {
    use crate::config::address_pool::{bindable, MAX_SCAN};
    if pool.first_free(0, |_| false, bindable).is_some() {
        return Ok(());
    }
    let first = pool.nth(0).map(std::net::IpAddr::V4);
    let why = first
        .and_then(|ip| std::net::TcpListener::bind((ip, 0)).err().map(|e| (ip, e)))
        .map_or_else(String::new, |(ip, e)| format!(" ({ip}: {e})"));
    Err(format!(
        "--address-pool {pool}: this host cannot listen on any of its addresses \
         (tried {} of {}){why}; give addresses assigned to this host's interfaces",
        pool.len().min(MAX_SCAN),
        pool.len()
    ))
}

fn fresh_key() -> Result<[u8; 32], String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for the sticky-session key: {e}"))?;
    Ok(bytes)
}

/// The key `AWSELB` cookies are signed with. With `--state FILE` it is kept beside it in
/// `FILE.sticky-key` (created on first start, mode 0600), so cookies stay valid across
/// restarts; without, each process makes its own.
fn sticky_key(state: Option<&std::path::Path>) -> Result<crate::http::sticky::Key, String> {
    let fresh = fresh_key;
    let Some(state) = state else {
        return Ok(crate::http::sticky::Key::new(fresh()?));
    };
    let mut path = state.as_os_str().to_owned();
    path.push(".sticky-key");
    let path = std::path::PathBuf::from(path);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim();
            let mut bytes = [0u8; 32];
            if text.len() != 64 {
                return Err(format!("{}: not a 64-digit hex key", path.display()));
            }
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                    .map_err(|_| format!("{}: not a 64-digit hex key", path.display()))?;
            }
            Ok(crate::http::sticky::Key::new(bytes))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let bytes = fresh()?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(format!("{hex}\n").as_bytes()))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(crate::http::sticky::Key::new(bytes))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}
