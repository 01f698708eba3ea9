//! Typed configuration of `shoal serve`: a TOML file (`--config`) < `SHOAL_*` environment
//! variables < command-line flags. Every knob has all three forms, named alike
//! (`seal_threshold` in the file, `SHOAL_SEAL_THRESHOLD`, `--seal-threshold`). With nothing set,
//! `shoal serve` is a single node on `127.0.0.1:6333` with its data in `./data`.
//! `src/config.example.toml` lists every key with its default.
//!
//! Secrets (API keys, the cluster secret) are [`Secret`]s: `Debug` prints `"***"`, so a logged
//! or panicking configuration never shows them. They can be read from a file
//! (`api_key_file`, ...) or the environment; given as a flag they are visible to every local
//! user in `ps`, and [`ServeConfig::warnings`] says so.

use crate::collection::IndexDefaults;
use crate::collection::limits::RequestLimits;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A secret string (an API key, the cluster secret). `Debug` prints `"***"`; read it with
/// [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is the empty string (an unset key in a file or the environment).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

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
    pub api_key: Option<Secret>,
    /// Key allowed to read only.
    pub read_only_api_key: Option<Secret>,
    /// Deadline of one request (answered with 503 when passed; a write may still complete).
    pub request_timeout: std::time::Duration,
    /// Caps on one request (also given to the router, which checks them itself).
    pub limits: RequestLimits,
    /// Heavy reads (searches, batches, counts, scrolls, retrieves) running at once; 0: eight
    /// per core, at least 16.
    pub search_concurrency: usize,
    /// Heavy reads waiting for a slot beyond those; more are answered 503 at once.
    pub search_queue: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit: 32 * 1024 * 1024,
            api_key: None,
            read_only_api_key: None,
            request_timeout: std::time::Duration::from_secs(60),
            limits: RequestLimits::default(),
            search_concurrency: 0,
            search_queue: 1024,
        }
    }
}

impl ApiConfig {
    /// `search_concurrency` with 0 resolved to its default.
    pub fn search_concurrency(&self) -> usize {
        if self.search_concurrency > 0 {
            return self.search_concurrency;
        }
        std::thread::available_parallelism()
            .map_or(2, usize::from)
            .saturating_mul(8)
            .max(16)
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
            $( $(#[$doc])* #[arg(long, env = $env, hide_env_values = true)] pub $name: Option<$ty>, )*
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
    /// Admin API key (everything allowed). As a flag it is visible in `ps`: prefer
    /// `SHOAL_API_KEY` or `--api-key-file`.
    api_key: Secret = "SHOAL_API_KEY",
    /// File holding the admin API key (surrounding whitespace ignored).
    api_key_file: PathBuf = "SHOAL_API_KEY_FILE",
    /// Read-only API key (as a flag visible in `ps`, as `--api-key`).
    read_only_api_key: Secret = "SHOAL_READ_ONLY_API_KEY",
    /// File holding the read-only API key.
    read_only_api_key_file: PathBuf = "SHOAL_READ_ONLY_API_KEY_FILE",
    /// Most conditions in one filter, at every depth (default 1000).
    max_filter_conditions: usize = "SHOAL_MAX_FILTER_CONDITIONS",
    /// Most ids in `has_id` plus values in `match.any`/`match.except` in one filter (default
    /// 100000).
    max_filter_values: usize = "SHOAL_MAX_FILTER_VALUES",
    /// Most points in one upsert, ids in one retrieve, delete or payload update (default 10000).
    max_batch_points: usize = "SHOAL_MAX_BATCH_POINTS",
    /// Most searches in one `search/batch` or `query/batch` (default 1000).
    max_batch_queries: usize = "SHOAL_MAX_BATCH_QUERIES",
    /// Largest scroll `limit` (default 10000, also the most allowed).
    max_scroll_limit: usize = "SHOAL_MAX_SCROLL_LIMIT",
    /// Heavy reads (searches, batches, counts, scrolls, retrieves) running at once (0 = eight per
    /// core, at least 16).
    search_concurrency: usize = "SHOAL_SEARCH_CONCURRENCY",
    /// Heavy reads waiting for a slot; beyond that they are answered 503 (default 1024).
    search_queue: usize = "SHOAL_SEARCH_QUEUE",
    /// Shard reads on the blocking pool at once, for this node's and other nodes' requests
    /// (0 = four per core, at least 8).
    blocking_reads: usize = "SHOAL_BLOCKING_READS",
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
    /// a per-user key generated into `~/.shoal/cluster.key`). As a flag it is visible in `ps`:
    /// prefer `SHOAL_CLUSTER_SECRET` or `--cluster-secret-file`.
    cluster_secret: Secret = "SHOAL_CLUSTER_SECRET",
    /// File holding the cluster secret.
    cluster_secret_file: PathBuf = "SHOAL_CLUSTER_SECRET_FILE",
}

/// How this node takes part in a cluster (`Debug` hides the secret).
#[derive(Clone)]
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

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("node_id", &self.node_id)
            .field("internal_listen", &self.internal_listen)
            .field("advertise_internal", &self.advertise_internal)
            .field("advertise_api", &self.advertise_api)
            .field("peers", &self.peers)
            .field("join", &self.join)
            .field("secret", &"***")
            .field("fault_injection", &self.fault_injection)
            .finish()
    }
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
    let secret = secret.map(|s| s.expose().to_owned());
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
    /// Shard reads on the blocking pool at once (the router's `blocking_reads`; 0 = four per
    /// core, at least 8).
    pub blocking_reads: usize,
    /// What the operator should know about how the configuration was given (a key on the
    /// command line); logged once logging is set up.
    pub warnings: Vec<String>,
}

/// A secret from `value` or `file` (not both); `key` names them in errors.
fn secret_from(
    value: Option<Secret>,
    file: Option<&Path>,
    key: &str,
) -> Result<Option<Secret>, ConfigError> {
    let value = value.filter(|v| !v.is_empty());
    let Some(path) = file.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(value);
    };
    if value.is_some() {
        return Err(ConfigError::Invalid(format!(
            "give either {key} or {key}_file, not both"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Invalid(format!(
            "{key}_file {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let s = text.trim();
    if s.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{key}_file {} is empty",
            path.display()
        )));
    }
    Ok(Some(Secret::new(s)))
}

/// Warnings for secrets given as flags: clap fills a field from the environment only when the
/// flag is absent, so a value that differs from the variable's came from the command line.
fn flag_warnings(args: &ServeArgs) -> Vec<String> {
    let given = [
        (
            "--api-key",
            "SHOAL_API_KEY",
            "--api-key-file",
            &args.api_key,
        ),
        (
            "--read-only-api-key",
            "SHOAL_READ_ONLY_API_KEY",
            "--read-only-api-key-file",
            &args.read_only_api_key,
        ),
        (
            "--cluster-secret",
            "SHOAL_CLUSTER_SECRET",
            "--cluster-secret-file",
            &args.cluster_secret,
        ),
    ];
    given
        .into_iter()
        .filter(|(_, env, _, v)| {
            v.as_ref().is_some_and(|v| {
                !v.is_empty() && std::env::var(env).ok().as_deref() != Some(v.expose())
            })
        })
        .map(|(flag, env, file, _)| {
            format!(
                "{flag} was given on the command line, where every local user can read it (ps, /proc): use {file} or {env} instead"
            )
        })
        .collect()
}

impl ServeConfig {
    /// Resolves flags and environment (already merged by clap) over the optional TOML file.
    pub fn load(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => Self::read_file(path)?,
            None => FileConfig::default(),
        };
        let warnings = flag_warnings(&args);
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
        let listen = m.listen.clone().unwrap_or_else(|| "127.0.0.1:6333".into());
        let mut m = m;
        m.cluster_secret = secret_from(
            m.cluster_secret.take(),
            m.cluster_secret_file.as_deref(),
            "cluster_secret",
        )?;
        let cluster = cluster_settings(&m, &listen)?;
        let api_key = secret_from(m.api_key.take(), m.api_key_file.as_deref(), "api_key")?;
        let read_only_api_key = secret_from(
            m.read_only_api_key.take(),
            m.read_only_api_key_file.as_deref(),
            "read_only_api_key",
        )?;
        let d = RequestLimits::default();
        let limits = RequestLimits {
            max_filter_conditions: m.max_filter_conditions.unwrap_or(d.max_filter_conditions),
            max_filter_values: m.max_filter_values.unwrap_or(d.max_filter_values),
            max_batch_points: m.max_batch_points.unwrap_or(d.max_batch_points),
            max_batch_queries: m.max_batch_queries.unwrap_or(d.max_batch_queries),
            max_scroll_limit: m.max_scroll_limit.unwrap_or(d.max_scroll_limit),
        };
        limits.validate().map_err(ConfigError::Invalid)?;
        let api_defaults = ApiConfig::default();
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
                api_key,
                read_only_api_key,
                request_timeout: Duration::from_secs(timeout),
                limits,
                search_concurrency: m
                    .search_concurrency
                    .unwrap_or(api_defaults.search_concurrency),
                search_queue: m.search_queue.unwrap_or(api_defaults.search_queue),
            },
            raft,
            log_format: m.log_format.unwrap_or(LogFormat::Text),
            log_level: m.log_level.unwrap_or_else(|| "info,openraft=warn".into()),
            cluster,
            blocking_reads: m.blocking_reads.unwrap_or(0),
            warnings,
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

    /// Issue 14, finding 10: keys come from files or the environment, never show in `Debug`,
    /// and a key on the command line is warned about.
    #[test]
    fn secrets_load_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("admin.key");
        std::fs::write(&admin, "admin-from-file-1234\n").unwrap();
        let ro = dir.path().join("ro.key");
        std::fs::write(&ro, "  ro-from-file-5678 \n").unwrap();
        let c = ServeConfig::load(ServeArgs {
            api_key_file: Some(admin.clone()),
            read_only_api_key_file: Some(ro.clone()),
            cluster_secret: Some("cluster-secret-9012".into()),
            internal_listen: Some("127.0.0.1:7009".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.api.api_key.as_ref().map(Secret::expose),
            Some("admin-from-file-1234")
        );
        assert_eq!(
            c.api.read_only_api_key.as_ref().map(Secret::expose),
            Some("ro-from-file-5678")
        );
        assert_eq!(c.cluster.secret, b"cluster-secret-9012");
        let shown = format!("{c:?} {:?} {:?}", c.api, c.cluster);
        for key in [
            "admin-from-file-1234",
            "ro-from-file-5678",
            "cluster-secret-9012",
        ] {
            assert!(!shown.contains(key), "{key} printed by Debug: {shown}");
        }
        assert!(shown.contains("***"), "{shown}");
        // The flag structs too.
        let args = ServeArgs {
            api_key: Some("flag-key-3456".into()),
            ..Default::default()
        };
        assert!(!format!("{args:?}").contains("flag-key-3456"));
        let file: FileConfig = toml::from_str("api_key = \"file-key-7890\"").unwrap();
        assert!(!format!("{file:?}").contains("file-key-7890"));
        // A key given as a flag (not through SHOAL_API_KEY) is warned about, without the key.
        let c = ServeConfig::load(args).unwrap();
        assert_eq!(
            c.api.api_key.as_ref().map(Secret::expose),
            Some("flag-key-3456")
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("--api-key") && w.contains("ps")),
            "{:?}",
            c.warnings
        );
        assert!(!format!("{:?}", c.warnings).contains("flag-key-3456"));
        assert!(
            ServeConfig::load(ServeArgs::default())
                .unwrap()
                .warnings
                .is_empty()
        );
        // A key and a key file, an empty or missing file: refused.
        for args in [
            ServeArgs {
                api_key: Some("k".into()),
                api_key_file: Some(admin),
                ..Default::default()
            },
            ServeArgs {
                api_key_file: Some(dir.path().join("missing")),
                ..Default::default()
            },
            ServeArgs {
                read_only_api_key_file: Some({
                    let empty = dir.path().join("empty");
                    std::fs::write(&empty, "\n").unwrap();
                    empty
                }),
                ..Default::default()
            },
        ] {
            assert!(ServeConfig::load(args).is_err());
        }
    }

    #[test]
    fn request_limits_are_configurable() {
        let c = ServeConfig::load(ServeArgs::default()).unwrap();
        assert_eq!(c.api.limits, RequestLimits::default());
        let c = ServeConfig::load(ServeArgs {
            max_filter_conditions: Some(5),
            max_batch_points: Some(7),
            max_scroll_limit: Some(100),
            search_concurrency: Some(3),
            search_queue: Some(0),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.api.limits.max_filter_conditions, 5);
        assert_eq!(c.api.limits.max_batch_points, 7);
        assert_eq!(c.api.limits.max_scroll_limit, 100);
        assert_eq!(c.api.limits.max_batch_queries, 1000);
        assert_eq!((c.api.search_concurrency(), c.api.search_queue), (3, 0));
        for bad in [
            ServeArgs {
                max_batch_queries: Some(0),
                ..Default::default()
            },
            ServeArgs {
                max_scroll_limit: Some(10_001),
                ..Default::default()
            },
        ] {
            assert!(matches!(
                ServeConfig::load(bad),
                Err(ConfigError::Invalid(_))
            ));
        }
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
