//! The router: every node's entry point to data that lives in shards on many nodes.
//!
//! Pieces that need no cluster: [`merge`] (k-way merge of per-shard top-k), [`resilience`]
//! (deadlines, retries, circuit breakers, hedging), [`token`] (consistency levels and tokens),
//! [`hlc`] (write versions).

pub mod hlc;
pub mod merge;
pub mod resilience;
pub mod token;

pub use resilience::{ResilienceConfig, RoutingStats};
pub use token::{Consistency, ConsistencyToken, TokenError};
