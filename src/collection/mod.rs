//! The collection model: what a collection is, independent of how it is asked for.
//!
//! Below `router` and `cluster`, above `shard`, and knowing nothing of HTTP: the REST layer
//! (`api`) turns Qdrant's JSON into these types and maps [`Error`] to a status code; a second
//! front end would do the same and reuse every check here.
//!
//! - [`config`]: a collection's resolved settings ([`CollectionConfig`]) and the shard shape
//!   they imply; typed [`Metric`] and [`Placement`].
//! - [`spec`]: [`CollectionSpec`], a create request with every setting optional, and
//!   [`CollectionSpec::resolve`], which fills in [`IndexDefaults`] and checks each value.
//! - [`query`]: [`SearchQuery`], a search as the router runs it, and its checks.
//! - [`error`]: [`Error`], the one error type of the core (router, cluster), serialisable so
//!   that it crosses nodes unchanged.
//! - [`limits`]: the bounds every front end enforces, and [`validate_name`].

pub mod config;
pub mod error;
pub mod limits;
pub mod named;
pub mod query;
pub mod spec;

pub use config::{CollectionConfig, IvfPqSettings, Placement, SearchSettings, VectorSpace};
pub use error::Error;
pub use limits::validate_name;
pub use named::{CollectionVectors, NamedVector, NamedVectorSpec};
pub use query::SearchQuery;
pub use spec::{
    CollectionSpec, IndexDefaults, IvfPqSpec, SearchSpec, SearchUpdate, VectorSpec,
    check_recall_target,
};

/// The distance a collection's vectors are compared by (the index's own enum: the model adds
/// no variant the shards could not serve).
pub use crate::index::Metric;
