//! The pprof side: the schema (generated from `proto/profile.proto`),
//! interning tables, and the encoding of one period into a gzip'd profile.

mod builder;
#[allow(missing_docs, unreachable_pub, clippy::all)]
#[rustfmt::skip]
pub(crate) mod proto;
pub(crate) mod symbolize;
mod symtab;

pub(crate) use builder::{build, gzip, PeriodInfo, Sample, SampleKind, Stack, TaskLabels, ThreadLabels};

/// The sample types of a lock profile, in the order of `Sample.value`.
pub(crate) const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("lock-acquire", "count"),
    ("lock-acquire-wait", "nanoseconds"),
    ("lock-release", "count"),
    ("lock-release-hold", "nanoseconds"),
];

/// Label keys, as Datadog's lock profiler writes them.
pub(crate) mod labels {
    pub(crate) const LOCK_NAME: &str = "lock name";
    pub(crate) const LOCK_MODE: &str = "lock mode";
    pub(crate) const THREAD_ID: &str = "thread id";
    pub(crate) const THREAD_NATIVE_ID: &str = "thread native id";
    pub(crate) const THREAD_NAME: &str = "thread name";
    pub(crate) const TASK_ID: &str = "task id";
    pub(crate) const TASK_NAME: &str = "task name";
}
