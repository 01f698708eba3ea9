//! [`ShardApp`]: the shard engine as the state machine of a shard replica group: its
//! [`Lanes`], one engine per vector of the collection, fed by the group's one log.

use crate::raft::StateMachineApp;
use crate::shard::{Lanes, Shard, ShardCommand, ShardConfig, ShardError};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// The shard engine as a Raft state machine: decodes each command and applies it. `restore`
/// swaps in a whole new engine (a snapshot installed from the leader).
#[derive(Debug)]
pub struct ShardApp {
    lanes: RwLock<Lanes>,
    /// Where the shard keeps its sealed segment files (snapshots hard-link them).
    data_dir: Option<PathBuf>,
}

impl ShardApp {
    /// A state machine over an empty in-memory one-vector shard (snapshots write its segments
    /// out).
    pub fn new(config: ShardConfig) -> Self {
        ShardApp {
            lanes: RwLock::new(Lanes::single(Shard::new(config))),
            data_dir: None,
        }
    }

    /// A state machine over an empty one-vector shard whose sealed segment files live in
    /// `data_dir`.
    pub fn with_data_dir(config: ShardConfig, data_dir: &Path) -> std::io::Result<Self> {
        Self::with_lanes(vec![config], data_dir)
    }

    /// A state machine over empty lanes of these shapes (one per vector of the collection),
    /// their sealed segment files under `data_dir`.
    pub fn with_lanes(configs: Vec<ShardConfig>, data_dir: &Path) -> std::io::Result<Self> {
        Ok(ShardApp {
            lanes: RwLock::new(Lanes::open(configs, data_dir).map_err(std::io::Error::other)?),
            data_dir: Some(data_dir.to_owned()),
        })
    }

    /// The current lanes (cheap clone).
    pub fn lanes(&self) -> Lanes {
        self.lanes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current engine of lane 0 (every read but a search of another vector runs on it;
    /// cheap clone).
    pub fn shard(&self) -> Shard {
        self.lanes().primary().clone()
    }

    /// Checks a command against every lane before it is logged.
    pub fn validate(&self, command: &ShardCommand) -> Result<(), ShardError> {
        self.lanes().validate(command)
    }
}

/// Response bytes of `apply`: empty for success, else the error message.
impl StateMachineApp for ShardApp {
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8> {
        let result = ShardCommand::decode(command)
            .map_err(|e| e.to_string())
            .and_then(|cmd| self.lanes().apply(index, &cmd).map_err(|e| e.to_string()));
        match result {
            Ok(_) => Vec::new(),
            Err(msg) => {
                tracing::warn!(index, error = %msg, "shard command refused at apply");
                msg.into_bytes()
            }
        }
    }

    fn snapshot(&self, dir: &Path) -> std::io::Result<()> {
        self.lanes()
            .snapshot(dir)
            .map(|_| ())
            .map_err(std::io::Error::other)
    }

    fn restore(&self, dir: &Path) -> std::io::Result<()> {
        let count = self.lanes().len();
        let lanes = Lanes::restore_into(dir, count, true, self.data_dir.as_deref())
            .map_err(std::io::Error::other)?;
        *self.lanes.write().unwrap_or_else(|e| e.into_inner()) = lanes;
        Ok(())
    }
}
