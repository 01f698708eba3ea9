//! shoal: a sharded approximate-nearest-neighbour vector database.
//!
//! The layers point downward, as `DESIGN.md` lays them out:
//! `api → router → cluster/raft → shard → storage → index`.
//! [`index`] is pure maths with no I/O; [`storage`] turns index parts into crash-safe,
//! memory-mapped files; [`datasets`] and [`bench`] measure everything above.

#![warn(missing_docs)]

pub mod api;
pub mod bench;
pub mod cluster;
pub mod config;
pub mod datasets;
pub mod index;
pub mod raft;
pub mod router;
pub mod shard;
pub mod storage;
