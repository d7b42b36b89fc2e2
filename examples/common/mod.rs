//! Shared by the stress examples: a semaphore, an event and a bounded queue
//! built from lockprof's profiled primitives (std has none of the three), the
//! statistics every scenario reports, the scenario configurations, and
//! helpers to read profiles back.
//!
//! Each example uses a different part of this module.
#![allow(dead_code)]

pub mod config;
pub mod primitives;
pub mod production;
pub mod profiles;
pub mod stats;
pub mod summary;
