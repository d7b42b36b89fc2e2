//! What a profile says about who took a lock: the labels of the thread
//! behind an event and, for async locks, of the task; and how the current
//! ones are read.

#[cfg(feature = "tokio")]
use std::cell::Cell;
use std::sync::Arc;

/// The labels of one thread, built once per thread on its first sampled event.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ThreadMeta {
    /// Rust's `ThreadId` as a number.
    pub(crate) id: u64,
    /// The OS thread id (`gettid` on Linux).
    pub(crate) native_id: u64,
    pub(crate) name: String,
}

impl ThreadMeta {
    pub(crate) fn current() -> Arc<ThreadMeta> {
        let thread = std::thread::current();
        let id = thread_id_number(thread.id());
        let name = thread
            .name()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Thread-{id}"));
        Arc::new(ThreadMeta {
            id,
            native_id: native_id(),
            name,
        })
    }
}

/// `ThreadId` has no stable accessor for its number; its `Debug` form is
/// `ThreadId(N)`.
fn thread_id_number(id: std::thread::ThreadId) -> u64 {
    let s = format!("{id:?}");
    s.trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse()
        .unwrap_or(0)
}

#[cfg(target_os = "linux")]
fn native_id() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}

#[cfg(not(target_os = "linux"))]
fn native_id() -> u64 {
    0
}

/// What a profile says about the async task behind an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TaskLabels {
    /// tokio's task id, when the event happened inside a tokio task.
    pub(crate) id: Option<u64>,
    /// The name given with [`crate::with_task_name`].
    pub(crate) name: Option<Arc<str>>,
}

#[cfg(feature = "tokio")]
impl TaskLabels {
    /// The labels of the task being polled on this thread; `None` outside
    /// any task. Cold path only: may format a number.
    pub(crate) fn current() -> Option<TaskLabels> {
        let id = task_id();
        let name = current_name();
        if id.is_none() && name.is_none() {
            return None;
        }
        Some(TaskLabels { id, name })
    }
}

#[cfg(feature = "tokio")]
thread_local! {
    /// The name of the task being polled on this thread: set by
    /// [`with_current_name`] for the duration of one poll, null otherwise.
    static CURRENT_NAME: Cell<*const Arc<str>> = const { Cell::new(std::ptr::null()) };
}

#[cfg(feature = "tokio")]
/// Runs `f` (one poll of a named task) with `name` as this thread's current
/// task name, restoring the previous one afterwards, also on unwind.
pub(crate) fn with_current_name<R>(name: &Arc<str>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<*const Arc<str>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0 {
                let _ = CURRENT_NAME.try_with(|c| c.set(previous));
            }
        }
    }
    let previous = CURRENT_NAME.try_with(|c| c.replace(name)).ok();
    let _restore = Restore(previous);
    f()
}

#[cfg(feature = "tokio")]
fn current_name() -> Option<Arc<str>> {
    CURRENT_NAME
        .try_with(|c| {
            let p = c.get();
            // SAFETY: a non-null pointer was set by `with_current_name` on
            // this thread from a reference that outlives the call it is set
            // for, and is reset before that call returns or unwinds; we are
            // inside that call.
            (!p.is_null()).then(|| Arc::clone(unsafe { &*p }))
        })
        .ok()
        .flatten()
}

#[cfg(feature = "tokio")]
fn task_id() -> Option<u64> {
    use std::fmt::Write;

    /// tokio's `Id` is opaque but displays as its number: format it into a
    /// stack buffer, without allocating.
    struct Buf {
        bytes: [u8; 24],
        len: usize,
    }
    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.len + s.len();
            let dest = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
            dest.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    let id = tokio::task::try_id()?;
    let mut buf = Buf {
        bytes: [0; 24],
        len: 0,
    };
    write!(buf, "{id}").ok()?;
    std::str::from_utf8(buf.bytes.get(..buf.len)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_and_ids_are_read() {
        let meta = std::thread::Builder::new()
            .name("worker-7".into())
            .spawn(ThreadMeta::current)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(meta.name, "worker-7");
        assert!(meta.id > 0);
        assert!(meta.native_id > 0);
        assert_ne!(meta.native_id, ThreadMeta::current().native_id);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn task_names_nest_and_are_restored() {
        assert_eq!(current_name(), None);
        let outer: Arc<str> = Arc::from("outer");
        let inner: Arc<str> = Arc::from("inner");
        with_current_name(&outer, || {
            assert_eq!(current_name().as_deref(), Some("outer"));
            with_current_name(&inner, || {
                assert_eq!(current_name().as_deref(), Some("inner"));
            });
            assert_eq!(current_name().as_deref(), Some("outer"));
            let unwound = std::panic::catch_unwind(|| with_current_name(&inner, || panic!("in a poll")));
            assert!(unwound.is_err());
            assert_eq!(current_name().as_deref(), Some("outer"));
        });
        assert_eq!(current_name(), None);
        assert_eq!(TaskLabels::current(), None);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn the_task_id_is_tokios_number() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (ours, theirs) = rt.block_on(async {
            tokio::spawn(async { (task_id(), tokio::task::id().to_string()) })
                .await
                .unwrap()
        });
        assert_eq!(ours.map(|id| id.to_string()), Some(theirs));
        assert_eq!(task_id(), None);
    }
}
