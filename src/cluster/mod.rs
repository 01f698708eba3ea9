//! The cluster: which shard holds which point, and (as it grows) membership and the metadata
//! group. Placement is pure and deterministic so that every router computes the same answer
//! from the same metadata.

pub mod placement;
