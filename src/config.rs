//! Typed configuration of `shoal serve`: a TOML file (`--config`) < `SHOAL_*` environment
//! variables < command-line flags. Every knob has all three forms, named alike
//! (`seal_threshold` in the file, `SHOAL_SEAL_THRESHOLD`, `--seal-threshold`). With nothing set,
//! `shoal serve` is a single node on `127.0.0.1:6333` with its data in `./data`.
//! `src/config.example.toml` lists every key with its default.

use crate::api::{ApiConfig, IndexDefaults};
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
        }

        /// The TOML file: the same keys as the flags, in snake case.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FileConfig {
            $( $(#[$doc])* pub $name: Option<$ty>, )*
        }

        impl ServeArgs {
            fn merged(self, file: FileConfig) -> FileConfig {
                FileConfig { $( $name: self.$name.or(file.$name), )* }
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
    /// Default lists probed per search.
    nprobe: usize = "SHOAL_NPROBE",
    /// Default re-rank factor.
    rerank: usize = "SHOAL_RERANK",
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
            nprobe: m.nprobe.unwrap_or(d.nprobe),
            rerank: m.rerank.unwrap_or(d.rerank),
        };
        if index.pq_bits != 4 && index.pq_bits != 8 {
            return Err(ConfigError::Invalid(format!(
                "pq_bits = {}: use 4 or 8",
                index.pq_bits
            )));
        }
        if index.nlist == 0 || index.nprobe == 0 {
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
        Ok(ServeConfig {
            listen: m.listen.unwrap_or_else(|| "127.0.0.1:6333".into()),
            data_dir: m.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            index,
            threads: m.threads.unwrap_or(0),
            api: ApiConfig {
                body_limit,
                api_key: empty_to_none(m.api_key),
                read_only_api_key: empty_to_none(m.read_only_api_key),
                request_timeout: Duration::from_secs(timeout),
            },
            raft: crate::raft::RaftConfig {
                // One-member groups: elections only happen at start, keep them short.
                heartbeat_ms: 100,
                election_timeout_min_ms: 300,
                election_timeout_max_ms: 600,
                snapshot_every_entries: snapshot_every,
                keep_entries_behind_snapshot: snapshot_every.min(1000),
                ..crate::raft::RaftConfig::default()
            },
            log_format: m.log_format.unwrap_or(LogFormat::Text),
            log_level: m.log_level.unwrap_or_else(|| "info,openraft=warn".into()),
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
    fn example_file_parses() {
        let text = include_str!("config.example.toml");
        let f: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(f.listen.as_deref(), Some("127.0.0.1:6333"));
    }
}
