//! What the stress programs (`src/bin/`) share: a semaphore, an event and a
//! bounded queue built from lockprof's profiled primitives (std has none of
//! the three), the statistics every scenario reports, the scenario
//! configurations, the production tests' common parts, a summary of the
//! profiles written, and a clean `cargo build` for the runner.

pub mod cargo;
pub mod config;
pub mod primitives;
pub mod production;
pub mod stats;
#[path = "../../examples/common/summary.rs"]
pub mod summary;
