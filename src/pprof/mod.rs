//! The pprof side: the schema (generated from `proto/profile.proto`),
//! interning tables, the encoding of one period into a gzip'd profile, and
//! the reading of profiles back ([`read`], public as `lockprof::read`).

mod builder;
#[allow(missing_docs, unreachable_pub, clippy::all)]
#[rustfmt::skip]
pub(crate) mod proto;
pub(crate) mod files;
pub mod read;
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

/// The label keys of lock profiles: Datadog's lock profiler's, and
/// lockprof's own two, which pair caused wait with the waiters' stacks. The
/// encoder writes them and [`read`] reads them; read a sample's labels with
/// [`LockSample::label_str`](read::LockSample::label_str) and
/// [`label_num`](read::LockSample::label_num).
pub mod labels {
    /// The lock, as `<file>:<line>` or `<file>:<line>:<name>` (a string;
    /// parse it with [`LockName`](crate::read::LockName)).
    pub const LOCK_NAME: &str = "lock name";
    /// `read` or `write`, on samples of read-write locks only (a string).
    pub const LOCK_MODE: &str = "lock mode";
    /// The thread's id in the process (a number).
    pub const THREAD_ID: &str = "thread id";
    /// The operating system's id of the thread (a number).
    pub const THREAD_NATIVE_ID: &str = "thread native id";
    /// The thread's name (a string).
    pub const THREAD_NAME: &str = "thread name";
    /// tokio's id of the task, on samples of async locks taken in a task (a
    /// number).
    pub const TASK_ID: &str = "task id";
    /// The name given with `with_task_name`, on samples of async locks (a
    /// string).
    pub const TASK_NAME: &str = "task name";
    /// On a `lock-caused-wait` sample: the waiters' stack, as the `stack id`
    /// of their `lock-acquire` samples names it (a number).
    pub const WAITER_STACK_ID: &str = "waiter stack id";
    /// On a `lock-acquire` sample whose stack waited on a holder (a number).
    pub const STACK_ID: &str = "stack id";
    /// The span the events happened in (a number: Datadog's span id, its 64
    /// bits as pprof's signed number), with the `opentelemetry` feature.
    pub const SPAN_ID: &str = "span id";
    /// Its local root span's id (a number, like `span id`).
    pub const LOCAL_ROOT_SPAN_ID: &str = "local root span id";
    /// The local root span's resource, when it served a request (a string).
    pub const TRACE_ENDPOINT: &str = "trace endpoint";
}
