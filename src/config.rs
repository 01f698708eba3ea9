//! Typed configuration of `shoal serve`: a TOML file (`--config`) < `SHOAL_*` environment
//! variables < command-line flags. Every knob has all three forms, named alike
//! (`seal_threshold` in the file, `SHOAL_SEAL_THRESHOLD`, `--seal-threshold`). With nothing set,
//! `shoal serve` is a single node on `127.0.0.1:6333` with its data in `./data`.
//! `src/config.example.toml` lists every key with its default.

use crate::collection::IndexDefaults;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("invalid config file {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    /// A value is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Settings of the REST server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Key allowed to do everything (none: no authentication).
    pub api_key: Option<String>,
    /// Key allowed to read only.
    pub read_only_api_key: Option<String>,
    /// Deadline of one request (answered with 503 when passed; a write may still complete).
    pub request_timeout: std::time::Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit: 32 * 1024 * 1024,
            api_key: None,
            read_only_api_key: None,
            request_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

macro_rules! knobs {
    ($( $(#[$doc:meta])* $name:ident : $ty:ty = $env:literal ),* $(,)?) => {
        /// Flags and environment variables of `shoal serve` (all optional: unset ones fall back to
        /// the config file, then to the defaults).
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct ServeArgs {
            /// TOML configuration file.
            #[arg(long, env = "SHOAL_CONFIG")]
            pub config: Option<PathBuf>,
            $( $(#[$doc])* #[arg(long, env = $env)] pub $name: Option<$ty>, )*
            /// Tests only: expose `POST /debug/partition` to cut this node off from peers.
            #[arg(long, env = "SHOAL_FAULT_INJECTION", num_args = 0..=1,
                  default_missing_value = "true",
                  value_parser = clap::builder::BoolishValueParser::new())]
            pub fault_injection: Option<bool>,
        }

        /// The TOML file: the same keys as the flags, in snake case.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FileConfig {
            $( $(#[$doc])* pub $name: Option<$ty>, )*
            /// Tests only: expose `POST /debug/partition`.
            pub fault_injection: Option<bool>,
        }

        impl ServeArgs {
            fn merged(self, file: FileConfig) -> FileConfig {
                FileConfig {
                    $( $name: self.$name.or(file.$name), )*
                    fault_injection: self.fault_injection.or(file.fault_injection),
                }
            }
        }
    };
}

knobs! {
    /// Public REST address.
    listen: String = "SHOAL_LISTEN",
    /// Data directory.
    data_dir: PathBuf = "SHOAL_DATA_DIR",
    /// Default inverted lists per sealed segment.
    nlist: usize = "SHOAL_NLIST",
    /// Default PQ bits per code (4 or 8).
    pq_bits: u8 = "SHOAL_PQ_BITS",
    /// Default rows of the mutable segment before it is sealed and indexed.
    seal_threshold: usize = "SHOAL_SEAL_THRESHOLD",
    /// Lists probed per search, fixed for new collections (unset: each sealed segment's
    /// calibrated choice for the recall target).
    nprobe: usize = "SHOAL_NPROBE",
    /// Re-rank factor, fixed for new collections (unset: calibrated, as nprobe).
    rerank: usize = "SHOAL_RERANK",
    /// Default recall@10 target of new collections, in (0, 1] (default 0.95).
    recall_target: f64 = "SHOAL_RECALL_TARGET",
    /// Worker threads for searches and index builds (0 = one per core).
    threads: usize = "SHOAL_THREADS",
    /// Seconds a request may take before it is answered with 503.
    request_timeout_secs: u64 = "SHOAL_REQUEST_TIMEOUT_SECS",
    /// Largest request body in bytes.
    body_limit: usize = "SHOAL_BODY_LIMIT",
    /// Admin API key (everything allowed).
    api_key: String = "SHOAL_API_KEY",
    /// Read-only API key.
    read_only_api_key: String = "SHOAL_READ_ONLY_API_KEY",
    /// Raft: build a shard snapshot after this many log entries (the log before it is dropped).
    snapshot_every: u64 = "SHOAL_SNAPSHOT_EVERY",
    /// Log format: text or json.
    log_format: LogFormat = "SHOAL_LOG_FORMAT",
    /// Log filter (tracing env-filter syntax), e.g. `info` or `shoal=debug`.
    log_level: String = "SHOAL_LOG_LEVEL",
    /// This node's id in the cluster (unique, never reused after a node is wiped; default 1).
    node_id: u64 = "SHOAL_NODE_ID",
    /// Node-to-node address (Raft, metadata, routing); default 127.0.0.1:6335 when clustering.
    internal_listen: String = "SHOAL_INTERNAL_LISTEN",
    /// Host (or host:port of the REST API) other nodes and clients use to reach this node.
    advertise: String = "SHOAL_ADVERTISE",
    /// Static cluster: `1=host1:6335,2=host2:6335,3=host3:6335` (internal addresses).
    peers: String = "SHOAL_PEERS",
    /// Join a running cluster through the internal address of any member.
    join: String = "SHOAL_JOIN",
    /// Shared secret of the internal port (required beyond loopback; on loopback without it,
    /// a per-user key generated into `~/.shoal/cluster.key`).
    cluster_secret: String = "SHOAL_CLUSTER_SECRET",
}

/// How this node takes part in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This node's id.
    pub node_id: u64,
    /// Address the internal port binds (None: a one-node cluster without an internal port).
    pub internal_listen: Option<String>,
    /// Internal address other nodes dial to reach this node.
    pub advertise_internal: String,
    /// REST address advertised to other nodes (for redirects and `/cluster`).
    pub advertise_api: String,
    /// Static membership: node id → internal address (empty without `--peers`).
    pub peers: std::collections::BTreeMap<u64, String>,
    /// Internal address of a member to join through.
    pub join: Option<String>,
    /// Secret presented and required on the internal port.
    pub secret: Vec<u8>,
    /// Whether `POST /debug/partition` is served.
    pub fault_injection: bool,
}

impl ClusterSettings {
    /// Whether this node talks to others (`--peers`, `--join` or `--internal-listen` given).
    pub fn is_clustered(&self) -> bool {
        self.internal_listen.is_some()
    }
}

/// Parses `1=host1:6335,2=host2:6335`.
pub fn parse_peers(text: &str) -> Result<std::collections::BTreeMap<u64, String>, ConfigError> {
    let mut out = std::collections::BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || {
            ConfigError::Invalid(format!(
                "peers: {part:?} is not ID=HOST:PORT (e.g. 1=10.0.0.1:6335)"
            ))
        };
        let (id, addr) = part.split_once('=').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        let addr = addr.trim();
        if id == 0 || !addr.contains(':') {
            return Err(bad());
        }
        if out.insert(id, addr.to_owned()).is_some() {
            return Err(ConfigError::Invalid(format!(
                "peers: node {id} listed twice"
            )));
        }
    }
    Ok(out)
}

fn is_loopback_addr(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_unspecified_addr(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or("", |(_, p)| p)
}

fn cluster_settings(m: &FileConfig, listen: &str) -> Result<ClusterSettings, ConfigError> {
    let node_id = m.node_id.unwrap_or(1);
    if node_id == 0 {
        return Err(ConfigError::Invalid("node_id must be at least 1".into()));
    }
    let peers = parse_peers(m.peers.as_deref().unwrap_or(""))?;
    if !peers.is_empty() && !peers.contains_key(&node_id) {
        return Err(ConfigError::Invalid(format!(
            "node_id {node_id} is not in peers ({}): list every member, this one included",
            m.peers.as_deref().unwrap_or("")
        )));
    }
    let join = m.join.clone().filter(|j| !j.is_empty());
    if join.is_some() && !peers.is_empty() {
        return Err(ConfigError::Invalid(
            "give either peers (static bootstrap) or join (add to a running cluster), not both"
                .into(),
        ));
    }
    let clustered = !peers.is_empty() || join.is_some() || m.internal_listen.is_some();
    let internal_listen = if clustered {
        Some(
            m.internal_listen
                .clone()
                .or_else(|| peers.get(&node_id).cloned())
                .unwrap_or_else(|| "127.0.0.1:6335".into()),
        )
    } else {
        None
    };
    let advertise = m.advertise.clone().filter(|a| !a.is_empty());
    let advertise_host = advertise.as_deref().map(|a| {
        if a.contains(':') && !a.starts_with('[') {
            a.rsplit_once(':').map_or(a, |(h, _)| h)
        } else {
            a
        }
    });
    let advertise_internal = match (&internal_listen, peers.get(&node_id)) {
        (_, Some(mine)) => mine.clone(),
        (Some(bind), None) => match advertise_host {
            Some(h) => format!("{h}:{}", port_of(bind)),
            None if is_unspecified_addr(bind) => {
                return Err(ConfigError::Invalid(format!(
                    "internal_listen {bind} is a wildcard: set advertise to the host other nodes reach this one at"
                )));
            }
            None => bind.clone(),
        },
        (None, None) => "local".into(),
    };
    let advertise_api = match advertise_host {
        Some(h) => format!("{h}:{}", port_of(listen)),
        None => listen.to_owned(),
    };
    let secret = m.cluster_secret.clone().filter(|s| !s.is_empty());
    let beyond_loopback = internal_listen
        .as_deref()
        .is_some_and(|a| !is_loopback_addr(a))
        || peers.values().any(|a| !is_loopback_addr(a))
        || join.as_deref().is_some_and(|a| !is_loopback_addr(a));
    let secret = match secret {
        Some(s) => s.into_bytes(),
        None if beyond_loopback => {
            return Err(ConfigError::Invalid(
                "cluster_secret is required when the internal port or a peer is beyond loopback: every member must share it".into(),
            ));
        }
        // Not clustered: no internal port is served and no peer is dialled, so nothing ever
        // authenticates; a random key (no file written) keeps it so.
        None if internal_listen.is_none() => rand::random::<[u8; 32]>().to_vec(),
        // No public default: this user's generated loopback key (raft::tcp::secret).
        None => crate::raft::tcp::secret::loopback_secret().map_err(|e| {
            ConfigError::Invalid(format!(
                "no cluster_secret and no loopback cluster key: {e}"
            ))
        })?,
    };
    Ok(ClusterSettings {
        node_id,
        internal_listen,
        advertise_internal,
        advertise_api,
        peers,
        join,
        secret,
        fault_injection: m.fault_injection.unwrap_or(false),
    })
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Public REST address.
    pub listen: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Index defaults for new collections.
    pub index: IndexDefaults,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// API settings (body limit, keys).
    pub api: ApiConfig,
    /// Raft timings and snapshot policy of the shard groups.
    pub raft: crate::raft::RaftConfig,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// Cluster membership and the internal port.
    pub cluster: ClusterSettings,
}

impl ServeConfig {
    /// Resolves flags and environment (already merged by clap) over the optional TOML file.
    pub fn load(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => Self::read_file(path)?,
            None => FileConfig::default(),
        };
        let m = args.merged(file);
        let d = IndexDefaults::default();
        let index = IndexDefaults {
            nlist: m.nlist.unwrap_or(d.nlist),
            pq_bits: m.pq_bits.unwrap_or(d.pq_bits),
            seal_threshold: m.seal_threshold.unwrap_or(d.seal_threshold),
            nprobe: m.nprobe.or(d.nprobe),
            rerank: m.rerank.or(d.rerank),
            recall_target: m.recall_target.unwrap_or(d.recall_target),
        };
        crate::collection::check_recall_target(index.recall_target, "recall_target")
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if index.pq_bits != 4 && index.pq_bits != 8 {
            return Err(ConfigError::Invalid(format!(
                "pq_bits = {}: use 4 or 8",
                index.pq_bits
            )));
        }
        if index.nlist == 0 || index.nprobe == Some(0) {
            return Err(ConfigError::Invalid(
                "nlist and nprobe must be at least 1".into(),
            ));
        }
        let body_limit = m.body_limit.unwrap_or(ApiConfig::default().body_limit);
        if body_limit < 1024 {
            return Err(ConfigError::Invalid(
                "body_limit must be at least 1024 bytes".into(),
            ));
        }
        let timeout = m.request_timeout_secs.unwrap_or(60);
        if timeout == 0 {
            return Err(ConfigError::Invalid(
                "request_timeout_secs must be at least 1".into(),
            ));
        }
        let snapshot_every = m.snapshot_every.unwrap_or(5000);
        if snapshot_every == 0 {
            return Err(ConfigError::Invalid(
                "snapshot_every must be at least 1".into(),
            ));
        }
        let empty_to_none = |k: Option<String>| k.filter(|k| !k.is_empty());
        let listen = m.listen.clone().unwrap_or_else(|| "127.0.0.1:6333".into());
        let cluster = cluster_settings(&m, &listen)?;
        let raft = if cluster.is_clustered() {
            // Many groups per node: slow heartbeats (not coalesced across groups), 1.5-3 s
            // elections, as RAFT-NOTES recommends.
            crate::raft::RaftConfig {
                snapshot_every_entries: snapshot_every,
                keep_entries_behind_snapshot: snapshot_every.min(1000),
                ..crate::raft::RaftConfig::default()
            }
        } else {
            crate::raft::RaftConfig {
                // One-member groups: elections only happen at start, keep them short.
                heartbeat_ms: 100,
                election_timeout_min_ms: 300,
                election_timeout_max_ms: 600,
                snapshot_every_entries: snapshot_every,
                keep_entries_behind_snapshot: snapshot_every.min(1000),
                ..crate::raft::RaftConfig::default()
            }
        };
        Ok(ServeConfig {
            listen,
            data_dir: m.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            index,
            threads: m.threads.unwrap_or(0),
            api: ApiConfig {
                body_limit,
                api_key: empty_to_none(m.api_key),
                read_only_api_key: empty_to_none(m.read_only_api_key),
                request_timeout: Duration::from_secs(timeout),
            },
            raft,
            log_format: m.log_format.unwrap_or(LogFormat::Text),
            log_level: m.log_level.unwrap_or_else(|| "info,openraft=warn".into()),
            cluster,
        })
    }

    fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_owned(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:7000\"\nnlist = 64\nlog_format = \"json\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            nlist: Some(32),
            ..Default::default()
        };
        let c = ServeConfig::load(args).unwrap();
        assert_eq!(c.listen, "0.0.0.0:7000");
        assert_eq!(c.index.nlist, 32);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        std::fs::write(&path, "nlsit = 3\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(matches!(
            ServeConfig::load(args),
            Err(ConfigError::Parse(..))
        ));
        let c = ServeConfig::load(ServeArgs::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:6333");
    }

    #[test]
    fn cluster_flags_resolve() {
        let c = ServeConfig::load(ServeArgs::default()).unwrap();
        assert!(!c.cluster.is_clustered());
        assert_eq!(c.cluster.node_id, 1);
        let args = ServeArgs {
            node_id: Some(2),
            peers: Some("1=127.0.0.1:7001, 2=127.0.0.1:7002,3=127.0.0.1:7003".into()),
            ..Default::default()
        };
        let c = ServeConfig::load(args).unwrap();
        assert_eq!(c.cluster.internal_listen.as_deref(), Some("127.0.0.1:7002"));
        assert_eq!(c.cluster.advertise_internal, "127.0.0.1:7002");
        assert_eq!(c.cluster.peers.len(), 3);
        assert_eq!(
            c.cluster.secret,
            crate::raft::tcp::secret::loopback_secret().unwrap()
        );
        assert_eq!(c.raft.heartbeat_ms, 500);
        // Not in its own peer list.
        let args = ServeArgs {
            node_id: Some(4),
            peers: Some("1=127.0.0.1:7001".into()),
            ..Default::default()
        };
        assert!(ServeConfig::load(args).is_err());
        // Beyond loopback without a secret.
        let args = ServeArgs {
            internal_listen: Some("0.0.0.0:6335".into()),
            advertise: Some("db1".into()),
            join: Some("10.0.0.1:6335".into()),
            ..Default::default()
        };
        assert!(ServeConfig::load(args.clone()).is_err());
        let c = ServeConfig::load(ServeArgs {
            cluster_secret: Some("s3cret".into()),
            ..args
        })
        .unwrap();
        assert_eq!(c.cluster.advertise_internal, "db1:6335");
        assert_eq!(c.cluster.advertise_api, "db1:6333");
        assert!(parse_peers("1=a").is_err());
        assert!(parse_peers("x=a:1").is_err());
        assert!(parse_peers("1=a:1,1=b:2").is_err());
    }

    /// Issue 14, finding 4: with API keys set and no cluster secret, the internal port (which
    /// API keys do not guard) is never served beyond loopback, and the loopback secret is not a
    /// public constant.
    #[test]
    fn api_keys_without_a_cluster_secret_keep_the_internal_port_on_loopback() {
        let keyed = ServeArgs {
            api_key: Some("admin-key".into()),
            read_only_api_key: Some("read-key".into()),
            ..Default::default()
        };
        for beyond in [
            ServeArgs {
                internal_listen: Some("0.0.0.0:6335".into()),
                advertise: Some("db1".into()),
                ..keyed.clone()
            },
            ServeArgs {
                internal_listen: Some("10.1.2.3:6335".into()),
                ..keyed.clone()
            },
            ServeArgs {
                peers: Some("1=127.0.0.1:6335,2=10.1.2.3:6335".into()),
                ..keyed.clone()
            },
        ] {
            let err = ServeConfig::load(beyond.clone()).unwrap_err().to_string();
            assert!(err.contains("cluster_secret"), "{beyond:?}: {err}");
        }
        // On loopback it starts, with this user's generated key: not the old public default.
        let c = ServeConfig::load(ServeArgs {
            internal_listen: Some("127.0.0.1:6335".into()),
            ..keyed.clone()
        })
        .unwrap();
        assert_eq!(c.cluster.internal_listen.as_deref(), Some("127.0.0.1:6335"));
        assert_ne!(c.cluster.secret, b"shoal-loopback-only");
        assert!(c.cluster.secret.len() >= 32);
        // Unclustered: no port, and a random key that nobody else holds.
        let a = ServeConfig::load(keyed.clone()).unwrap();
        let b = ServeConfig::load(keyed).unwrap();
        assert!(a.cluster.internal_listen.is_none());
        assert_ne!(a.cluster.secret, b.cluster.secret);
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("config.example.toml");
        let f: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(f.listen.as_deref(), Some("127.0.0.1:6333"));
        // The example's values are the defaults: nothing fixed, the default recall target.
        assert_eq!((f.nprobe, f.rerank), (None, None));
        assert_eq!(
            f.recall_target,
            Some(crate::collection::IndexDefaults::default().recall_target)
        );
    }
}
