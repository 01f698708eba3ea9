//! The benchmark harness behind `shoal bench`: build an index on a dataset, run its queries one
//! per call on client threads, and report recall, throughput, latency percentiles and memory per
//! setting (JSON, a terminal table, and a recall-vs-QPS plot), or search the parameter space for
//! the fastest settings that reach a target recall. With `--server` the same sweep runs against a
//! running shoal through its REST API ([`remote`]).

pub mod cli;
pub mod engine;
mod error;
pub mod measure;
pub mod plot;
pub mod remote;
pub mod report;
pub mod run;
pub mod sharded;
pub mod sweep;
pub mod tune;

#[cfg(test)]
mod tests;

pub use error::BenchError;
pub use report::{BenchReport, QueryResult};
pub use sweep::{BuildConfig, SearchConfig, SweepGrid};
