//! # lockprof
//!
//! Drop-in profiled replacements for `std::sync`'s locks. Swap an import,
//! start the profiler, and get pprof profiles of which locks your threads
//! wait on and hold, for how long, from which call stacks — by the variable
//! name of each lock (`server.rs:42:session_lock`).
//!
//! ```no_run
//! use lockprof::{named, Profiler, ProfiledMutex as Mutex}; // was: use std::sync::Mutex;
//!
//! named!(static SESSIONS: Mutex<Vec<u64>> = Mutex::new(Vec::new()));
//!
//! let profiler = Profiler::builder().capture_pct(100.0).start().expect("profiler");
//! SESSIONS.lock().unwrap().push(42);
//! let stats = profiler.stop(); // writes the last profile
//! println!("{} profile(s) written", stats.profiles_exported);
//! ```
//!
//! Profiles have the sample types of Datadog's lock profiler —
//! `lock-acquire`, `lock-acquire-wait`, `lock-release`, `lock-release-hold` —
//! and the labels `lock name`, `thread id`, `thread native id`, `thread name`
//! (and `lock mode` for read-write locks). Read them with the `lockprof`
//! command (feature `cli`: `lockprof top FILE`), with
//! `go tool pprof -raw FILE`, or in code with [`read::LockProfile`].
//!
//! ## On-demand profiles
//!
//! With the `http` feature, `ProfilerBuilder::serve("127.0.0.1:6061")` (or
//! `DD_PROFILING_LOCK_SERVE`) serves `GET /debug/pprof/lock?seconds=N`, a
//! profile of the next N seconds, and `GET /debug/pprof/lock`, everything
//! since the start, in the files' format: `go tool pprof
//! 'http://127.0.0.1:6061/debug/pprof/lock?seconds=30'`. Loopback only,
//! unless `serve_non_loopback(true)`: the endpoint has no authentication.
//!
//! ## Async locks
//!
//! With the `tokio` feature, `ProfiledAsyncMutex`, `ProfiledAsyncRwLock`
//! and `ProfiledSemaphore` replace tokio's `Mutex`, `RwLock` and
//! `Semaphore` with the same API. Their samples also carry `task id` (tokio's
//! task id) and `task name` (given with `with_task_name`); the wait is
//! measured from the first poll of `lock()`, the hold across `.await`s and
//! threads until the guard drops.
//!
//! ## Which request waited
//!
//! With the `opentelemetry` feature, `ProfilingSpanProcessor`, installed in
//! an OpenTelemetry tracer provider (Datadog's `datadog-opentelemetry`, or
//! any SDK 0.33 one), gives each sampled event taken inside a span the
//! labels Datadog links profiles to traces by: `span id`, `local root span
//! id` and `trace endpoint`.
//!
//! ## Cost
//!
//! An acquisition that is not sampled reads no clock, captures no stack,
//! allocates nothing and writes no shared memory beyond the lock itself: one
//! relaxed load of a global flag and a thread-local countdown. Measured
//! figures are in the repository's `docs/performance.md`.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod accuracy;
#[cfg(feature = "tokio")]
mod async_locks;
mod bench;
mod config;
mod encode;
mod export;
mod naming;
#[cfg(feature = "opentelemetry")]
mod otel;
mod pprof;
mod profiler;
mod record;
#[cfg(feature = "http")]
mod serve;
mod site;
mod sync;
mod util;

pub use config::{
    env_bool, ConfigError, Settings, DEFAULT_CAPTURE_PCT, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_SAMPLES_PER_SEC, DEFAULT_QUEUE_CAPACITY, MAX_FLUSH_INTERVAL, MAX_QUEUE_CAPACITY,
    MIN_CAPTURE_PCT, MIN_FLUSH_INTERVAL,
};
#[cfg(feature = "datadog")]
pub use export::{
    ApiKey, DatadogSettings, UploadStats, DEFAULT_AGENT_SOCKET, DEFAULT_API_TIMEOUT, DEFAULT_SITE,
};
pub use export::{EncodedProfile, Export, ExportError, FileExporter, ProfileStats};
pub use naming::Nameable;
#[cfg(feature = "opentelemetry")]
pub use otel::ProfilingSpanProcessor;
pub use pprof::read;
pub use profiler::{
    start_from_env, try_start_from_env, NotStarted, Profiler, ProfilerBuilder, ProfilerHandle, ProfilerStats,
    StartError,
};
pub use record::stack::Unwinder;
#[cfg(feature = "http")]
pub use serve::{ServeSettings, MAX_WINDOW_SECONDS};
pub use site::LockSite;
pub use sync::{
    ProfiledCondvar, ProfiledMutex, ProfiledMutexGuard, ProfiledReentrantMutex, ProfiledReentrantMutexGuard,
    ProfiledRwLock, ProfiledRwLockReadGuard, ProfiledRwLockWriteGuard, WaitTimeoutResult,
};

#[cfg(feature = "tokio")]
pub use async_locks::{
    with_task_name, AsyncTryLockError, NamedTask, OwnedProfiledAsyncMutexGuard,
    OwnedProfiledAsyncRwLockReadGuard, OwnedProfiledAsyncRwLockWriteGuard, OwnedProfiledSemaphorePermit,
    ProfiledAsyncMutex, ProfiledAsyncMutexGuard, ProfiledAsyncRwLock, ProfiledAsyncRwLockReadGuard,
    ProfiledAsyncRwLockWriteGuard, ProfiledSemaphore, ProfiledSemaphorePermit,
};

#[doc(hidden)]
pub use naming::__private;

/// What the benchmarks measure below the public API.
#[doc(hidden)]
pub mod __bench {
    pub use crate::bench::*;
}

#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub use record::fault::{hold_profiler_locks, inject_profiler_panics};
