//! The benchmark harness behind `shoal bench`: build an index on a dataset, run its queries one
//! per call on client threads, and report recall, throughput, latency percentiles and memory per
//! setting (JSON, a terminal table, and a recall-vs-QPS plot), or search the parameter space for
//! the fastest settings that reach a target recall. With `--server` the same sweep runs against a
//! running shoal through its REST API ([`remote`]). `--engine shard` runs shoal's shard engine in
//! process as the database uses it ([`db`]), and `--server URL --defaults` measures a collection
//! created and queried as a user does; both can add filtered workloads ([`filters`]).

pub mod cli;
pub mod db;
pub mod engine;
mod error;
pub mod filters;
pub mod measure;
pub mod plot;
pub mod remote;
pub mod report;
pub mod run;
pub mod sharded;
pub mod sweep;
pub mod tune;

#[cfg(test)]
mod db_tests;
#[cfg(test)]
mod tests;

pub use error::BenchError;
pub use report::{BenchReport, QueryResult};
pub use sweep::{BuildConfig, SearchConfig, SweepGrid};
