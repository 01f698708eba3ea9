//! On-disk formats: sealed-segment files, crash-safe writes.
