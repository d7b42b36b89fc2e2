//! A counting semaphore, an event and a bounded queue made of a
//! [`ProfiledMutex`] and [`ProfiledCondvar`]s, so that their internal locking
//! is profiled like any other lock.
//!
//! Each constructor is `#[track_caller]` and each type is [`Nameable`]: the
//! profile shows `lock_profiler_stress.rs:120:work_queue`, the place and name
//! the caller gave, not a line inside this file.

use std::collections::VecDeque;
use std::sync::PoisonError;
use std::time::Duration;

use lockprof::{LockSite, Nameable, ProfiledCondvar, ProfiledMutex};

/// A counting semaphore (Python's `threading.Semaphore`).
pub struct Semaphore {
    permits: ProfiledMutex<usize>,
    released: ProfiledCondvar,
}

/// A permit of a [`Semaphore`]; given back when dropped.
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct SemaphorePermit<'a> {
    semaphore: &'a Semaphore,
}

impl Semaphore {
    /// A semaphore with `permits` permits; its site is the caller's.
    #[track_caller]
    pub fn new(permits: usize) -> Self {
        Semaphore {
            permits: ProfiledMutex::new(permits),
            released: ProfiledCondvar::new(),
        }
    }

    /// Takes a permit, waiting at most `timeout` for one; `None` on timeout.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        let permits = self.permits.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut permits, _) = self
            .released
            .wait_timeout_while(permits, timeout, |free| *free == 0)
            .unwrap_or_else(PoisonError::into_inner);
        if *permits == 0 {
            return None;
        }
        *permits -= 1;
        Some(SemaphorePermit { semaphore: self })
    }

    /// Where the semaphore was created, and its name.
    pub fn site(&self) -> &LockSite {
        self.permits.site()
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        let semaphore = self.semaphore;
        *semaphore.permits.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        semaphore.released.notify_one();
    }
}

impl Nameable for Semaphore {
    fn set_name(&mut self, name: &'static str) {
        self.permits.set_name(name);
    }
}

/// A flag threads can wait for (Python's `threading.Event`).
pub struct Event {
    flag: ProfiledMutex<bool>,
    changed: ProfiledCondvar,
}

impl Event {
    /// An event, initially set or not; its site is the caller's.
    #[track_caller]
    pub fn new(set: bool) -> Self {
        Event {
            flag: ProfiledMutex::new(set),
            changed: ProfiledCondvar::new(),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        *self.flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        *self.flag.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }

    /// Waits until the flag is set; false if `timeout` passed first.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let flag = self.flag.lock().unwrap_or_else(PoisonError::into_inner);
        let (flag, _) = self
            .changed
            .wait_timeout_while(flag, timeout, |set| !*set)
            .unwrap_or_else(PoisonError::into_inner);
        *flag
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        let flag = self.flag.lock().unwrap_or_else(PoisonError::into_inner);
        drop(
            self.changed
                .wait_while(flag, |set| !*set)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    /// Where the event was created, and its name.
    pub fn site(&self) -> &LockSite {
        self.flag.site()
    }
}

impl Nameable for Event {
    fn set_name(&mut self, name: &'static str) {
        self.flag.set_name(name);
    }
}

/// A bounded FIFO queue (Python's `queue.Queue(maxsize)`).
pub struct BoundedQueue<T> {
    items: ProfiledMutex<VecDeque<T>>,
    not_empty: ProfiledCondvar,
    not_full: ProfiledCondvar,
    capacity: usize,
}

impl<T> BoundedQueue<T> {
    /// A queue holding at most `capacity` items (at least one); its site is
    /// the caller's.
    #[track_caller]
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        BoundedQueue {
            items: ProfiledMutex::new(VecDeque::with_capacity(capacity)),
            not_empty: ProfiledCondvar::new(),
            not_full: ProfiledCondvar::new(),
            capacity,
        }
    }

    /// Appends `item`, waiting at most `timeout` for room; gives the item
    /// back if the queue stayed full.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), T> {
        let items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut items, _) = self
            .not_full
            .wait_timeout_while(items, timeout, |items| items.len() >= self.capacity)
            .unwrap_or_else(PoisonError::into_inner);
        if items.len() >= self.capacity {
            return Err(item);
        }
        items.push_back(item);
        drop(items);
        self.not_empty.notify_one();
        Ok(())
    }

    /// Takes the oldest item, waiting at most `timeout` for one.
    pub fn get_timeout(&self, timeout: Duration) -> Option<T> {
        let items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut items, _) = self
            .not_empty
            .wait_timeout_while(items, timeout, |items| items.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        let item = items.pop_front()?;
        drop(items);
        self.not_full.notify_one();
        Some(item)
    }

    /// Where the queue was created, and its name.
    pub fn site(&self) -> &LockSite {
        self.items.site()
    }
}

impl<T> Nameable for BoundedQueue<T> {
    fn set_name(&mut self, name: &'static str) {
        self.items.set_name(name);
    }
}
