//! What the profile says about the thread behind an event.

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
}
