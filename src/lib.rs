//! shoal: a sharded approximate-nearest-neighbour vector database.
//!
//! The layers point one way: `api → router → cluster → collection → shard → storage → index`,
//! with [`raft`] a leaf beside them and [`config`] read by the layers under [`api`]. Nothing
//! below [`api`] speaks HTTP or imports it (`tests/layering.rs` keeps it so).
//! [`collection`] is the model every front end shares: configs, specs, checks, the core error.
//! [`index`] is pure maths with no I/O; [`storage`] turns index parts into crash-safe,
//! memory-mapped files; [`datasets`] and [`bench`] measure everything above.

#![warn(missing_docs)]

pub mod api;
pub mod bench;
pub mod cluster;
pub mod collection;
pub mod config;
pub mod datasets;
pub mod index;
pub mod node;
pub mod process;
pub mod raft;
pub mod router;
pub mod shard;
pub mod storage;
