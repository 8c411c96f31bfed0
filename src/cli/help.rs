//! `clb --help`: every flag with its default, in DESIGN §4's order.

use super::*;

/// The `--help` page, laid out as DESIGN §4 lays out the flags.
pub fn usage() -> String {
    format!(
        "\
clb {version}: a self-hosted Classic Load Balancer, ELB Classic behaviour on your own machines.

Usage: clb [OPTIONS]

  -n, --name NAME              load balancer name: 1 to 32 of A-Z a-z 0-9 '-' (default \"{DEFAULT_NAME}\")
  -l, --listener SPEC          PROTO:PORT[:INSTANCE_PROTO:INSTANCE_PORT]; PROTO is http, https,
                               tcp or ssl; repeatable, at least one; e.g. http:8080:http:80,
                               https:8443:http:80, tcp:5432, ssl:443:tcp:80, http:80:https:443
  -i, --instance SPEC          ID=HOST[:PORT][@ZONE], repeatable (none: every request gets 503);
                               HOST is an IPv4 address, [IPv6] or a DNS name; a PORT overrides the
                               listeners' instance port; ZONE defaults to {DEFAULT_ZONE}
      --zones LIST             enabled zones, comma-separated (default: every zone named by an
                               instance, or {DEFAULT_ZONE} when there is none)
      --cross-zone on|off      spread requests over all enabled zones (default on)
      --idle-timeout S         seconds without data before a connection closes, {idle_min}-{idle_max}
                               (default {idle_default})
      --bind ADDR              address the listeners bind (default 0.0.0.0)
      --address-pool CIDR|ADDR,...  each load balancer (this one too) listens on its own IPv4
                               address from the pool, e.g. 127.0.3.0/29 or 10.0.0.5,10.0.0.6;
                               not with --bind. Without it, load balancers share --bind and
                               their ports must differ
      --workers N              event loops, {workers_min}-{workers_max} (default: number of cores)
      --max-connections N      client connections per worker, {conn_min}-{conn_max} (default {DEFAULT_MAX_CONNECTIONS})
      --api ADDR|off           ELB Query API (aws elb --endpoint-url http://ADDR) (default
                               127.0.0.1:9900); a non-loopback ADDR needs --api-credentials
      --api-credentials FILE   require SigV4-signed API requests with this key: lines
                               aws_access_key_id = ... and aws_secret_access_key = ...
      --state FILE             API changes are saved here (atomically, before the answer) and
                               reloaded at start
      --cluster ENDPOINTS      keep the model in etcd instead (comma-separated http://HOST:PORT
                               v3 endpoints), shared with every node given the same etcd and
                               prefix; not with --state
      --cluster-prefix PREFIX  where this cluster's keys live in etcd (default /clb/)
      --draining S|off         connection draining timeout of this load balancer, 1-3600
                               (default 300)
      --cert FILE --key FILE   PEM certificate chain and key (RSA or ECDSA) for https and ssl
                               listeners; repeatable pairs, chosen by SNI, the first is the
                               default (none: a self-signed certificate for localhost)
      --ssl-policy NAME        ELB security policy (default ELBSecurityPolicy-TLS-1-2-2017-01,
                               the one rustls can honour)
      --backend-ca FILE        HTTPS/SSL instances must present a certificate chained to one in
                               this PEM file, or one of its certificates itself (default: any
                               certificate, as ELB without a back-end authentication policy)
      --backend-public-key FILE
                               HTTPS/SSL instances must present this public key (PEM PUBLIC KEY,
                               or a certificate's key); repeatable: any one of them
      --proxy-protocol [v2:]PORT
                               send a PROXY protocol header (v1, or v2) first on every TCP
                               listener connection to this instance port; repeatable
      --health-check TARGET    HTTP:PORT/PATH, HTTPS:PORT/PATH, TCP:PORT or SSL:PORT;
                               an instance with its own PORT is probed there
                               (default TCP:<first listener's instance port>)
      --health-interval S      seconds between probes of an instance, 5-300 (default 30)
      --health-timeout S       seconds a probe may take, 2-60, less than the interval (default 5)
      --healthy-threshold N    consecutive successes that bring an instance back, 2-10 (default 10)
      --unhealthy-threshold N  consecutive failures that take it out, 2-10 (default 2)
      --node NAME              this node's name in a fleet of clb nodes: 1-63 of A-Z a-z 0-9 - _ .
                               (default {DEFAULT_NODE_NAME}); unique: a second live node with the
                               same name is refused at start
      --node-zone ZONE         the zone this node serves (default {DEFAULT_ZONE})
      --node-address ADDR      the address clients reach this node at, published to the fleet
                               (default: --bind when it is one address, else loopback)
      --node-ttl S             lease TTL of this node's membership key, {ttl_min}-{ttl_max} (default
                               {ttl_default}): a node killed leaves the fleet within it
      --dns ADDR:PORT          answer DNS queries (UDP and TCP) for the load balancers' names,
                               e.g. 127.0.0.1:5353 (default: no DNS server)
      --dns-domain DOMAIN      the domain those names are under: NAME.DOMAIN (default elb.localhost)
  -h, --help                   print this help and exit
  -V, --version                print the version and exit

Traffic policies, limits and logging:
      --sticky lb[:S]|app:COOKIE
                               sticky sessions: an AWSELB cookie for S seconds, or for the life
                               of the application's COOKIE
      --desync-mode MODE       monitor, defensive (default) or strictest
      --max-backend-connections N
                               requests (HTTP) or connections (TCP) at once per instance and
                               worker; beyond, they wait in the surge queue (default: no limit)
      --surge-queue N          surge queue length for the process, shared by the workers; a full
                               queue spills over: 503, or the connection closed (default 1024)
      --allow [PORT=]CIDR      accept client connections only from these sources (all listeners, or
                               listener PORT); others are closed at accept; repeatable
      --subnet ID=ZONE         a subnet the API may name, and its zone (repeatable); an id
                               without one is its own zone
      --security-group sg-ID=CIDR[,CIDR...]
                               a security group the API may attach: the client sources it
                               admits (repeatable)
      --access-log FILE|-      one line per request (HTTP) or connection (TCP) in ELB's access-log
                               format, appended to FILE (reopened on SIGUSR1) or written to stdout
      --header-timeout S       seconds a request head may take from its first byte, 1-4000
                               (default 60); then 408 and close, however slowly bytes trickle

RUST_LOG sets the log level. A refused flag prints one line and exits 2.
",
        version = env!("CARGO_PKG_VERSION"),
        idle_min = IDLE_TIMEOUT_RANGE.0,
        idle_max = IDLE_TIMEOUT_RANGE.1,
        idle_default = DEFAULT_IDLE_TIMEOUT.as_secs(),
        workers_min = WORKERS_RANGE.0,
        workers_max = WORKERS_RANGE.1,
        conn_min = MAX_CONNECTIONS_RANGE.0,
        conn_max = MAX_CONNECTIONS_RANGE.1,
        ttl_min = node::NODE_TTL_RANGE.0,
        ttl_max = node::NODE_TTL_RANGE.1,
        ttl_default = node::DEFAULT_NODE_TTL,
        DEFAULT_NODE_NAME = node::DEFAULT_NODE_NAME,
    )
}
