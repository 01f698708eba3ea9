//! The benchmark harness behind `shoal bench`.
