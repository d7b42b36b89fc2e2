//! The pprof side: the schema (generated from `proto/profile.proto`),
//! interning tables, and the encoding of one period into a gzip'd profile.

mod builder;
#[allow(missing_docs, unreachable_pub, clippy::all)]
#[rustfmt::skip]
pub(crate) mod proto;
pub(crate) mod symbolize;
mod symtab;

#[cfg(feature = "datadog")]
pub(crate) use builder::without_caused_wait;
pub(crate) use builder::{
    build, gzip, PeriodInfo, Sample, SampleKind, SpanLabels, Stack, TaskLabels, ThreadLabels,
};

/// The sample types of a lock profile, in the order of `Sample.value`.
pub(crate) const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("lock-acquire", "count"),
    ("lock-acquire-wait", "nanoseconds"),
    ("lock-release", "count"),
    ("lock-release-hold", "nanoseconds"),
];

/// lockprof's own sample type, after the four above: the wait a holder
/// caused others (see the blame section of the README). In local files
/// always; in uploads only when asked for, since Datadog's lock profile has
/// the four above.
pub(crate) const CAUSED_WAIT_TYPE: (&str, &str) = ("lock-caused-wait", "nanoseconds");

/// Label keys, as Datadog's lock profiler writes them (and lockprof's own
/// two, which pair caused wait with the waiters' stacks).
pub(crate) mod labels {
    pub(crate) const LOCK_NAME: &str = "lock name";
    pub(crate) const LOCK_MODE: &str = "lock mode";
    pub(crate) const THREAD_ID: &str = "thread id";
    pub(crate) const THREAD_NATIVE_ID: &str = "thread native id";
    pub(crate) const THREAD_NAME: &str = "thread name";
    pub(crate) const TASK_ID: &str = "task id";
    pub(crate) const TASK_NAME: &str = "task name";
    /// On a `lock-caused-wait` sample: the waiters' stack, as the `stack id`
    /// of their `lock-acquire` samples names it.
    pub(crate) const WAITER_STACK_ID: &str = "waiter stack id";
    /// On a `lock-acquire` sample whose stack waited on a holder.
    pub(crate) const STACK_ID: &str = "stack id";
    /// The span the events happened in, a number (Datadog's span id, its
    /// 64 bits as pprof's signed number).
    pub(crate) const SPAN_ID: &str = "span id";
    /// Its local root span's id, a number like `span id`.
    pub(crate) const LOCAL_ROOT_SPAN_ID: &str = "local root span id";
    /// The local root span's resource, when it served a request.
    pub(crate) const TRACE_ENDPOINT: &str = "trace endpoint";
}
