//! [`ShardApp`]: the shard engine as the state machine of a shard replica group.

use crate::raft::StateMachineApp;
use crate::shard::{Shard, ShardCommand, ShardConfig};
use std::path::Path;
use std::sync::RwLock;

/// The shard engine as a Raft state machine: decodes each command and applies it. `restore`
/// swaps in a whole new engine (a snapshot installed from the leader).
#[derive(Debug)]
pub struct ShardApp {
    shard: RwLock<Shard>,
}

impl ShardApp {
    /// A state machine over an empty shard.
    pub fn new(config: ShardConfig) -> Self {
        ShardApp {
            shard: RwLock::new(Shard::new(config)),
        }
    }

    /// The current engine (queries run on it; cheap clone).
    pub fn shard(&self) -> Shard {
        self.shard.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Response bytes of `apply`: empty for success, else the error message.
impl StateMachineApp for ShardApp {
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8> {
        let result = ShardCommand::decode(command)
            .map_err(|e| e.to_string())
            .and_then(|cmd| self.shard().apply(index, &cmd).map_err(|e| e.to_string()));
        match result {
            Ok(_) => Vec::new(),
            Err(msg) => {
                tracing::warn!(index, error = %msg, "shard command refused at apply");
                msg.into_bytes()
            }
        }
    }

    fn snapshot(&self, dir: &Path) -> std::io::Result<()> {
        self.shard()
            .snapshot(dir)
            .map(|_| ())
            .map_err(std::io::Error::other)
    }

    fn restore(&self, dir: &Path) -> std::io::Result<()> {
        let shard = Shard::restore(dir, true).map_err(std::io::Error::other)?;
        *self.shard.write().unwrap_or_else(|e| e.into_inner()) = shard;
        Ok(())
    }
}
