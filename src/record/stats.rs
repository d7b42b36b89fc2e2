//! Exact acquisition counts per lock name, kept per thread.
//!
//! Every lock name (a [`SiteKey`]) gets a small index the first time one of
//! its locks is counted while a profiler runs; each lock instance remembers
//! the index inline ([`StatsSlot`], four bytes beside the raw lock). An
//! acquisition adds one to a counter in a table that belongs to the
//! acquiring thread, at `index × 6 + mode`: a thread-local load and store,
//! no write to memory that another core uses. The profiler thread reads
//! every thread's table at each flush and reports what changed since the
//! last one.
//!
//! Why per thread and per name, not per lock instance: a counter in a
//! per-lock heap block was a second cache line written inside every
//! critical section, which under contention travelled between cores with
//! the lock and halved throughput; and a block per instance, registered in
//! a global list, made a program that creates a lock per request allocate
//! and take a global mutex per request, and keep the block until the next
//! flush. Here a lock that lives for microseconds costs no allocation, no
//! global lock and no memory after it drops, and read locks are counted
//! exactly too (a thread's own counter is not a shared write).
//!
//! # When a count is reported
//!
//! A count is made with the acquisition, into the acquiring thread's table;
//! it is reported by the first flush that reads that table afterwards, and
//! only by that one (each flush remembers, per table slot, the value it
//! reported). A thread that exits leaves its table to the profiler, whose
//! next flush reads it a last time and frees it. Nothing is lost when a lock
//! or a thread goes away, and nothing is counted twice; a count made while a
//! flush is reading the table goes into the next profile. Every contended
//! acquisition (one whose first try failed) also adds one and its measured
//! wait to the same table, so that each lock's total wait is exact.

use std::cell::{Cell, RefCell};
use std::hash::{Hash, Hasher};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex as StdMutex};

use super::forksafe::ForkSafeMutex;
use super::{sampler, Mode};
use crate::site::{LockSite, SiteKey};
use crate::util::fxhash::FxHashMap;

/// Lock names counted at most: beyond, acquisitions of new names go to one
/// shared overflow count (reported in the profile's comments).
pub(crate) const MAX_SITES: usize = CHUNK * CHUNKS;
const CHUNK: usize = 1024;
const CHUNKS: usize = 256;

/// What is kept per lock name beside the per-thread counts: its key, and the
/// async locks' measured waits.
#[derive(Debug)]
struct SiteEntry {
    key: SiteKey,
    /// The modes behind table slots 0 and 1: `[Exclusive, Read]` for
    /// mutexes, `[Write, Read]` for read-write locks.
    mode_of: [Mode; 2],
    /// Contended acquisitions and their waits (clock ticks) of threads whose
    /// table could not be used.
    contended: [AtomicU64; 2],
    wait_ticks: [AtomicU64; 2],
    /// Acquisitions made while the thread's table could not be used (the
    /// thread's locals being torn down, or profiler code on the thread).
    orphans: [AtomicU64; 2],
}

/// The index of every name seen, and the entries, which never move: chunks
/// of [`CHUNK`] entries, allocated as needed and never freed, so that an
/// index handed out can be read without a lock.
struct Sites {
    by_key: FxHashMap<ContentKey, u32>,
}

static SITES: ForkSafeMutex<Sites> = ForkSafeMutex::new(|| Sites {
    by_key: FxHashMap::default(),
});
static CHUNK_PTRS: [AtomicPtr<SiteEntry>; CHUNKS] = [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS];
/// Entries `1..=SITE_COUNT` are initialised (index 0 means "none").
static SITE_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Acquisitions of names beyond [`MAX_SITES`].
static OVERFLOW: AtomicU64 = AtomicU64::new(0);

/// A [`SiteKey`] hashed and compared by content: the same name created in
/// two codegen units may have two copies of its strings.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ContentKey(SiteKey);

impl Hash for ContentKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let k = &self.0;
        (k.file, k.line, k.column, k.name).hash(state);
    }
}

fn entry(index: u32) -> Option<&'static SiteEntry> {
    let i = (index as usize).checked_sub(1)?;
    if i >= SITE_COUNT.load(Acquire) {
        return None;
    }
    let chunk = CHUNK_PTRS.get(i / CHUNK)?.load(Acquire);
    // SAFETY: a chunk, once published, is an array of CHUNK entries that is
    // never freed, and entry `i` was initialised before SITE_COUNT covered it
    // (Release in `assign`, Acquire above).
    (!chunk.is_null()).then(|| unsafe { &*chunk.add(i % CHUNK) })
}

/// The index of `site`'s name, assigning one if it is new. `None` beyond
/// [`MAX_SITES`] names.
fn assign(site: &LockSite, mode: Mode) -> Option<u32> {
    let key = site.key();
    let mut sites = SITES.lock();
    if let Some(&i) = sites.by_key.get(&ContentKey(key)) {
        return Some(i);
    }
    let i = SITE_COUNT.load(Relaxed);
    if i >= MAX_SITES {
        return None;
    }
    let slot = &CHUNK_PTRS[i / CHUNK];
    let mut chunk = slot.load(Acquire);
    if chunk.is_null() {
        let fresh: Box<[std::mem::MaybeUninit<SiteEntry>]> = Box::new_uninit_slice(CHUNK);
        chunk = Box::into_raw(fresh).cast::<SiteEntry>();
        slot.store(chunk, Release);
    }
    let first = match mode {
        Mode::Exclusive => Mode::Exclusive,
        Mode::Read | Mode::Write => Mode::Write,
    };
    // SAFETY: slot `i % CHUNK` of a chunk of CHUNK entries, not yet
    // initialised (SITE_COUNT does not cover it) and written only here, under
    // SITES.
    unsafe {
        chunk.add(i % CHUNK).write(SiteEntry {
            key,
            mode_of: [first, Mode::Read],
            contended: Default::default(),
            wait_ticks: Default::default(),
            orphans: Default::default(),
        });
    }
    SITE_COUNT.store(i + 1, Release);
    let index = i as u32 + 1;
    sites.by_key.insert(ContentKey(key), index);
    Some(index)
}

/// The SITES lock, for the fault-injection tests.
#[cfg(feature = "fault-injection")]
pub(crate) fn hold_registry() -> impl Drop {
    SITES.lock()
}

/// One thread's counters: slot `index × 6 + field × 2 + mode` holds, for
/// that name and mode by that thread, the acquisitions (field 0), the
/// contended ones (1) and their waits in clock ticks (2). Written only by the thread (plain
/// load and store), read by the profiler.
struct Table {
    slots: Box<[AtomicU64]>,
}

/// A thread's tables, shared with the profiler.
struct ThreadCounts {
    /// The current table; earlier (smaller) ones are kept in `old` until
    /// this is dropped, since the profiler may still be reading them.
    current: AtomicPtr<Table>,
    // Boxed: the profiler may hold a reference to a replaced table's
    // allocation, which must not move.
    #[allow(clippy::vec_box)]
    old: StdMutex<Vec<Box<Table>>>,
    /// Set (Release) when the thread is gone, after its last count.
    exited: AtomicBool,
    /// What the profiler reported per slot. Only the profiler touches it.
    reported: StdMutex<Vec<u64>>,
}

impl ThreadCounts {
    fn table(&self) -> &Table {
        // SAFETY: `current` always points to a live table (set in `grow`,
        // replaced tables are moved to `old` and live as long as `self`).
        unsafe { &*self.current.load(Acquire) }
    }
}

impl Drop for ThreadCounts {
    fn drop(&mut self) {
        let p = *self.current.get_mut();
        if !p.is_null() {
            // SAFETY: `current` came from `Box::into_raw` in `grow`.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// Every thread's tables, for the profiler to read.
static THREADS: ForkSafeMutex<Vec<Arc<ThreadCounts>>> = ForkSafeMutex::new(Vec::new);

/// Counters per lock name in a thread's table.
const PER_INDEX: usize = 6;
const FIELD_CONTENDED: usize = 2;
const FIELD_WAIT: usize = 4;

/// The fast path's view of this thread's table: no destructor, so reaching
/// it costs no initialisation check.
struct Fast {
    base: Cell<*const AtomicU64>,
    /// Slots in the table, minus those of index 0 (never assigned).
    len_m6: Cell<usize>,
    /// The acquisition counter this thread counted last ([`NO_SLOT`] for
    /// none), its [`last_key`] ([`NO_KEY`] for none) and the value it holds:
    /// see [`StatsSlot::count`].
    last: Cell<*const AtomicU64>,
    last_key: Cell<usize>,
    last_value: Cell<u64>,
}

/// No counter remembered: no lock's [`last_key`].
const NO_KEY: usize = usize::MAX;

/// [`Fast::last_key`] of a lock's index and mode.
#[inline(always)]
fn last_key(index: u32, mode: Mode) -> usize {
    index as usize * 8 + mode.index()
}

/// What [`Fast::last`] points to when no counter is remembered: never read
/// or written.
static NO_SLOT: AtomicU64 = AtomicU64::new(0);

impl Fast {
    /// This thread's counter `field` in `mode` of the lock of `index`, if its
    /// table has that lock's slots.
    #[inline(always)]
    fn slot(&self, index: u32, field: usize, mode: Mode) -> Option<&AtomicU64> {
        if !self.has(index) {
            return None;
        }
        // SAFETY: `base` points to this thread's current table of
        // `len_m6 + PER_INDEX` slots, kept alive by OWNER, and `has` checked
        // that `index * PER_INDEX` is a multiple of PER_INDEX below that;
        // `field + mode < 6`.
        Some(unsafe {
            &*self
                .base
                .get()
                .add(index as usize * PER_INDEX + field + mode.index())
        })
    }

    /// Whether this thread's table has the slots of the lock of `index`.
    #[inline(always)]
    fn has(&self, index: u32) -> bool {
        // Index 0 (no index yet) wraps to a huge value: not in the table.
        (index as usize * PER_INDEX).wrapping_sub(PER_INDEX) < self.len_m6.get()
    }

    /// Forgets the remembered counter: its table is being replaced or
    /// dropped.
    fn forget_last(&self) {
        self.last.set(&NO_SLOT);
        self.last_key.set(NO_KEY);
    }
}

thread_local! {
    static FAST: Fast = const {
        Fast {
            base: Cell::new(ptr::null()),
            len_m6: Cell::new(0),
            last: Cell::new(&NO_SLOT),
            last_key: Cell::new(NO_KEY),
            last_value: Cell::new(0),
        }
    };
    static OWNER: RefCell<Option<Owner>> = const { RefCell::new(None) };
}

/// Owns this thread's share of its tables: on thread exit, hands them to the
/// profiler.
struct Owner {
    counts: Arc<ThreadCounts>,
    /// Site identity → index, so that a new lock of a known name finds its
    /// index without the global lock.
    cache: SiteCache,
}

/// A thread's map from site identities ([`LockSite::identity`]) to indexes:
/// open addressing with linear probing, so that a lookup never allocates
/// (it runs with the user's lock held) and every name a thread uses is found
/// however many there are, up to [`SiteCache::MAX`].
///
/// It was a direct-mapped array of 256 entries: with 2,000 names used in
/// turn nearly every new lock missed it and took the global map's lock, and
/// 2 threads making locks per request ran 8.8–10× slower than unprofiled,
/// and 1.17–1.26× after (`examples/churn.rs --names 2000`, 5 s runs).
struct SiteCache {
    /// `(location, name, length, index)`; index 0 marks an empty entry.
    entries: Box<[(usize, usize, usize, u32)]>,
    used: usize,
}

impl SiteCache {
    /// 8 KiB, what every thread that counts starts with.
    const MIN: usize = 256;
    /// 1 MiB: a thread that meets more than half this many identities (a
    /// program that leaks a new name string per lock, say) forgets them all
    /// and starts again.
    const MAX: usize = 1 << 15;

    fn new() -> Self {
        SiteCache {
            entries: vec![(0, 0, 0, 0); Self::MIN].into_boxed_slice(),
            used: 0,
        }
    }

    #[inline]
    fn start(&self, (loc, name, len): (usize, usize, usize)) -> usize {
        let h = (loc ^ name.rotate_left(17) ^ len).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) & (self.entries.len() - 1)
    }

    /// The index cached for `id`. Never allocates.
    #[inline]
    fn get(&self, id: (usize, usize, usize)) -> Option<u32> {
        let mask = self.entries.len() - 1;
        let mut i = self.start(id);
        loop {
            let (l, n, k, index) = self.entries[i];
            if index == 0 {
                return None;
            }
            if (l, n, k) == id {
                return Some(index);
            }
            i = (i + 1) & mask;
        }
    }

    /// Remembers `index` for `id`; allocates when the map grows.
    fn insert(&mut self, id: (usize, usize, usize), index: u32) {
        if (self.used + 1) * 2 > self.entries.len() {
            let len = self.entries.len() * 2;
            let old = std::mem::replace(
                &mut self.entries,
                vec![(0, 0, 0, 0); len.min(Self::MAX)].into_boxed_slice(),
            );
            self.used = 0;
            if len <= Self::MAX {
                for (l, n, k, i) in old.iter().copied().filter(|e| e.3 != 0) {
                    self.put((l, n, k), i);
                }
            }
        }
        self.put(id, index);
    }

    fn put(&mut self, id: (usize, usize, usize), index: u32) {
        let mask = self.entries.len() - 1;
        let mut i = self.start(id);
        while self.entries[i].3 != 0 && (self.entries[i].0, self.entries[i].1, self.entries[i].2) != id {
            i = (i + 1) & mask;
        }
        if self.entries[i].3 == 0 {
            self.used += 1;
        }
        self.entries[i] = (id.0, id.1, id.2, index);
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Later acquisitions on this thread (other thread-locals' destructors)
        // must not touch the table: they become orphans.
        let _ = FAST.try_with(|f| {
            f.base.set(ptr::null());
            f.len_m6.set(0);
            f.forget_last();
        });
        self.counts.exited.store(true, Release);
    }
}

/// A lock's index into the per-name tables, assigned at its first counted
/// acquisition while a profiler runs (0 until then). Four bytes inline in
/// the lock; nothing to free when the lock drops.
pub(crate) struct StatsSlot(AtomicU32);

impl StatsSlot {
    pub(crate) const fn new() -> Self {
        StatsSlot(AtomicU32::new(0))
    }

    /// Counts one acquisition in `mode` by this thread, if this thread's
    /// table has its slot: a thread-local load and store. False when it has
    /// not (the lock's first acquisition on this thread, or a new name):
    /// then the caller, once it holds no lock, calls
    /// [`count_unlocked`](Self::count_unlocked). Never allocates, so it is
    /// safe with the user's lock held, whatever the global allocator does.
    ///
    /// The thread remembers the counter it counted last and the value it
    /// wrote there, so that counting the same lock (or a lock of the same
    /// name) again, the common case, loads nothing that depends on another
    /// load: this lock's index and the thread's remembered key and value are
    /// read side by side, then two stores. Looking the counter up in the
    /// table (the index, then the table's base and length, then the counter,
    /// then the add) made a chain of dependent loads right after the lock's
    /// CAS, which under contention waits for the lock's cache line to cross
    /// from the other core. On the AMD EPYC VM (2 threads, scratch harness,
    /// builds alternated), 2 locks taken in turn ran at a median 0.78×
    /// `parking_lot`'s throughput against 0.73× with the lookup, and one
    /// lock shared by 8 threads about 10 % faster. Reading the remembered
    /// counter before the CAS instead, so that only a store came after it,
    /// helped the two-lock line more (0.82×) but cost one contended lock
    /// 5–12 %: loads ahead of a locked instruction delay it.
    #[inline(always)]
    pub(crate) fn count(&self, mode: Mode) -> bool {
        let index = self.0.load(Relaxed);
        FAST.try_with(|f| {
            let key = last_key(index, mode);
            if key == f.last_key.get() {
                let v = f.last_value.get().wrapping_add(1);
                // SAFETY: a key that is some lock's was remembered with a
                // counter of this thread's current table (`forget_last` runs
                // before the table is replaced, and when OWNER drops it), and
                // `last_value` is what it holds: only this thread writes it,
                // always through here.
                unsafe { &*f.last.get() }.store(v, Relaxed);
                f.last_value.set(v);
                return true;
            }
            let Some(c) = f.slot(index, 0, mode) else {
                return false;
            };
            // A plain load and store: only this thread writes its table.
            let v = c.load(Relaxed).wrapping_add(1);
            c.store(v, Relaxed);
            f.last.set(c);
            f.last_key.set(key);
            f.last_value.set(v);
            true
        })
        .unwrap_or(false)
    }

    /// [`count`](Self::count), and when it fails for a lock that has no
    /// index yet but whose name this thread has counted before (a new lock
    /// of a known name: a lock made per request), finds the index in the
    /// thread's cache and counts. Never allocates, so it is safe with the
    /// user's lock held; false leaves the count to
    /// [`count_unlocked`](Self::count_unlocked).
    #[inline(always)]
    pub(crate) fn count_held(&self, site: &LockSite, mode: Mode) -> bool {
        self.count(mode) || self.count_known(site, mode)
    }

    /// The cold half of [`count_held`](Self::count_held). Deferring the
    /// first count of every new lock to its release cost a second cold path
    /// and the table's checks again there: 2 threads making a lock per
    /// request ran 1.24–1.29× slower than unprofiled, and 1.16–1.22× after
    /// (`examples/churn.rs`, 5 s runs).
    #[cold]
    #[inline(never)]
    fn count_known(&self, site: &LockSite, mode: Mode) -> bool {
        if self.0.load(Relaxed) != 0 {
            return false;
        }
        // A thread with a table has its OWNER initialised: no destructor is
        // registered (which may allocate) by the access below.
        if FAST.try_with(|f| f.len_m6.get() == 0).unwrap_or(true) {
            return false;
        }
        let id = site.identity();
        let Some(index) = OWNER
            .try_with(|o| o.try_borrow().ok()?.as_ref()?.cache.get(id))
            .ok()
            .flatten()
        else {
            return false;
        };
        self.0.store(index, Release);
        self.count(mode)
    }

    /// Whether this thread's table has this lock's slots.
    #[inline]
    pub(crate) fn ready(&self) -> bool {
        let index = self.0.load(Relaxed);
        FAST.try_with(|f| f.has(index)).unwrap_or(false)
    }

    /// Adds `v` to this lock's counter `field` in `mode` in this thread's
    /// table, if it has the slot. Not the acquisitions' counter, which only
    /// [`count`](Self::count) writes (it remembers the value it holds).
    #[inline(always)]
    fn add(&self, field: usize, mode: Mode, v: u64) -> bool {
        debug_assert_ne!(field, 0, "acquisitions are counted by `count`");
        let index = self.0.load(Relaxed);
        FAST.try_with(|f| {
            let Some(c) = f.slot(index, field, mode) else {
                return false;
            };
            // A plain load and store: only this thread writes its table.
            c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
            true
        })
        .unwrap_or(false)
    }

    /// Counts one acquisition that [`count`](Self::count) could not: assigns
    /// the lock's index and grows this thread's table as needed, which
    /// allocates. Call with no lock held (the acquisition's own lock may
    /// be taken by the allocator).
    #[cold]
    #[inline(never)]
    pub(crate) fn count_unlocked(&self, site: &LockSite, mode: Mode) {
        if self.count_held(site, mode) {
            return;
        }
        if sampler::inside_profiler() {
            // Taken by something the profiler did on this thread (an
            // allocator that takes a profiled lock): not the program's.
            return;
        }
        match self.prepare(site, mode) {
            Prepared::Table => {
                if self.count(mode) {
                    return;
                }
            }
            Prepared::Overflow => {
                OVERFLOW.fetch_add(1, Relaxed);
                return;
            }
            Prepared::NoTable => {}
        }
        if let Some(e) = self.index(site, mode).and_then(entry) {
            // No table on this thread (its locals are being torn down, or
            // profiler code runs on it): a shared atomic add, rare.
            e.orphans[mode.index()].fetch_add(1, Relaxed);
        }
    }

    /// Makes sure this thread's table has this lock's slot, so that
    /// [`count`](Self::count) succeeds: assigns the lock's index and grows
    /// the table, which allocates. Call with no lock held.
    #[cold]
    #[inline(never)]
    pub(crate) fn prepare(&self, site: &LockSite, mode: Mode) -> Prepared {
        let Some(index) = self.index(site, mode) else {
            return Prepared::Overflow;
        };
        if sampler::enter(|| grow(index as usize * PER_INDEX + PER_INDEX - 1)).unwrap_or(false) {
            Prepared::Table
        } else {
            Prepared::NoTable
        }
    }

    /// As [`count`](Self::count), for locks with several holders at once (a
    /// semaphore): the counter is the thread's own, so the same code is
    /// exact.
    #[cfg(feature = "tokio")]
    #[inline]
    pub(crate) fn count_shared(&self, site: &LockSite, mode: Mode) {
        if !self.count(mode) {
            self.count_unlocked(site, mode);
        }
    }

    /// Counts one contended acquisition that waited `wait_ticks` into this
    /// thread's table. Never allocates (the lock is held): call
    /// [`prepare`](Self::prepare) before the lock is taken, or the wait goes
    /// to the name's shared totals.
    #[cold]
    pub(crate) fn contended(&self, mode: Mode, wait_ticks: u64) {
        let index = self.0.load(Acquire);
        if self.add(FIELD_CONTENDED, mode, 1) && self.add(FIELD_WAIT, mode, wait_ticks) {
            return;
        }
        if let Some(e) = entry(index) {
            e.contended[mode.index()].fetch_add(1, Relaxed);
            e.wait_ticks[mode.index()].fetch_add(wait_ticks, Relaxed);
        }
    }

    /// This lock's index, assigned now if it has none.
    fn index(&self, site: &LockSite, mode: Mode) -> Option<u32> {
        match self.0.load(Acquire) {
            0 => {
                let i = lookup(site, mode)?;
                self.0.store(i, Release);
                Some(i)
            }
            i => Some(i),
        }
    }
}

/// What [`StatsSlot::prepare`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepared {
    /// The thread's table has the slot.
    Table,
    /// The thread has no table (being torn down, or inside profiler code).
    NoTable,
    /// Too many lock names: not counted.
    Overflow,
}

impl std::fmt::Debug for StatsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsSlot")
    }
}

/// The index of `site`'s name: from this thread's cache, else the global
/// map. Assigning a new name and caching it allocate, so they run as
/// profiler code: never inside profiler code (an allocator that takes a
/// profiled lock), and never recursively.
fn lookup(site: &LockSite, mode: Mode) -> Option<u32> {
    let id = site.identity();
    let cached = OWNER
        .try_with(|o| o.try_borrow().ok()?.as_ref()?.cache.get(id))
        .ok()
        .flatten();
    if cached.is_some() {
        return cached;
    }
    sampler::enter(|| {
        let index = assign(site, mode)?;
        let _ = OWNER.try_with(|o| {
            if let Ok(mut o) = o.try_borrow_mut() {
                if let Some(o) = o.as_mut() {
                    o.cache.insert(id, index);
                }
            }
        });
        Some(index)
    })
    .flatten()
}

/// Makes this thread's table cover `slot`; false when the thread has no
/// table and cannot get one (its locals are being torn down).
fn grow(slot: usize) -> bool {
    OWNER
        .try_with(|o| {
            let Ok(mut o) = o.try_borrow_mut() else {
                return false;
            };
            let owner = o.get_or_insert_with(|| {
                let counts = Arc::new(ThreadCounts {
                    current: AtomicPtr::new(Box::into_raw(Box::new(Table { slots: Box::new([]) }))),
                    old: StdMutex::new(Vec::new()),
                    exited: AtomicBool::new(false),
                    reported: StdMutex::new(Vec::new()),
                });
                THREADS.lock().push(Arc::clone(&counts));
                Owner {
                    counts,
                    cache: SiteCache::new(),
                }
            });
            let counts = &owner.counts;
            let old = counts.table();
            if slot >= old.slots.len() {
                let len = (slot + 1).div_ceil(PER_INDEX).next_power_of_two().max(4) * PER_INDEX;
                let slots: Box<[AtomicU64]> = (0..len)
                    .map(|i| AtomicU64::new(old.slots.get(i).map_or(0, |c| c.load(Relaxed))))
                    .collect();
                let fresh = Box::into_raw(Box::new(Table { slots }));
                let replaced = counts.current.swap(fresh, AcqRel);
                // SAFETY: `replaced` came from `Box::into_raw`; the profiler
                // may still read it, so it is kept until `counts` drops.
                let replaced = unsafe { Box::from_raw(replaced) };
                if let Ok(mut old) = counts.old.lock() {
                    old.push(replaced);
                } else {
                    std::mem::forget(replaced);
                }
            }
            let table = counts.table();
            FAST.try_with(|f| {
                f.base.set(table.slots.as_ptr());
                f.len_m6.set(table.slots.len().saturating_sub(PER_INDEX));
                f.forget_last();
            })
            .is_ok()
        })
        .unwrap_or(false)
}

/// In a forked child, before it starts a profiler: the parent's profiler
/// thread or a registering thread may have held these locks at the fork.
/// What they hold is kept when they were free. When the name map was held,
/// names seen again get new indexes, which the flush merges with the old
/// ones by key; a half-done assignment was never published.
pub(super) fn after_fork() {
    SITES.renew(|sites| sites);
    THREADS.renew(|threads| threads);
    REPORTED.renew(|reported| reported);
}

/// Totals for one lock name and mode over one profile period.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Exact acquisitions.
    pub(crate) acquired: Option<u64>,
    pub(crate) contended: u64,
    /// The exact total wait, where every wait is measured.
    pub(crate) wait_ns: Option<u64>,
}

/// What the profiler reported of the per-name atomics.
struct Reported {
    /// Per site index × 2 + mode, of the names' shared atomics: contended,
    /// wait ticks, orphans.
    shared: Vec<[u64; 3]>,
    /// Slots that have counted anything, ever: reported even when nothing
    /// changed, so that sampled events that reach the recorder after the
    /// flush that counted them weigh 0 instead of being estimated again.
    seen: Vec<bool>,
}

static REPORTED: ForkSafeMutex<Reported> = ForkSafeMutex::new(|| Reported {
    shared: Vec::new(),
    seen: Vec::new(),
});

/// Reads every table, returns what changed since the last call per
/// (name, mode), waits converted to nanoseconds at `ns_per_tick`, and frees
/// the tables of threads that are gone.
pub(super) fn take_deltas(ns_per_tick: f64) -> FxHashMap<(SiteKey, Mode), Totals> {
    let mut sums: Vec<u64> = Vec::new();
    // A snapshot: threads registering meanwhile do not wait for the reads.
    let threads: Vec<Arc<ThreadCounts>> = THREADS.lock().clone();
    let mut gone = Vec::new();
    for t in &threads {
        // Before the counters: once exited, no count can follow the reads.
        let exited = t.exited.load(Acquire);
        let table = t.table();
        // Only the profiler locks it; held only if a thread of a forked
        // parent held it at the fork, and then this table is the parent's.
        let Ok(mut reported) = t.reported.try_lock() else {
            continue;
        };
        if reported.len() < table.slots.len() {
            reported.resize(table.slots.len(), 0);
        }
        if sums.len() < table.slots.len() {
            sums.resize(table.slots.len(), 0);
        }
        for (i, c) in table.slots.iter().enumerate() {
            let now = c.load(Relaxed);
            sums[i] = sums[i].wrapping_add(now.wrapping_sub(std::mem::replace(&mut reported[i], now)));
        }
        if exited {
            gone.push(Arc::as_ptr(t));
        }
    }
    drop(threads);
    if !gone.is_empty() {
        THREADS.lock().retain(|t| !gone.contains(&Arc::as_ptr(t)));
    }
    // After the tables: every index they counted for is covered.
    let n_sites = SITE_COUNT.load(Acquire);
    if sums.len() < (n_sites + 1) * PER_INDEX {
        sums.resize((n_sites + 1) * PER_INDEX, 0);
    }
    let slots = (n_sites + 1) * 2;

    // The waits are summed in ticks and converted once per name and mode.
    let mut out: FxHashMap<(SiteKey, Mode), (Totals, u64)> = FxHashMap::default();
    let mut rep = REPORTED.lock();
    let rep = &mut *rep;
    if rep.shared.len() < slots {
        rep.shared.resize(slots, [0; 3]);
        rep.seen.resize(slots, false);
    }
    for index in 1..=n_sites as u32 {
        let Some(e) = entry(index) else { continue };
        for m in 0..2 {
            let slot = index as usize * 2 + m;
            let now = [
                e.contended[m].load(Relaxed),
                e.wait_ticks[m].load(Relaxed),
                e.orphans[m].load(Relaxed),
            ];
            let r = &mut rep.shared[slot];
            let delta: [u64; 3] =
                std::array::from_fn(|k| now[k].wrapping_sub(std::mem::replace(&mut r[k], now[k])));
            let at = |field: usize| sums[index as usize * PER_INDEX + field + m];
            let count = at(0) + delta[2];
            let contended = at(FIELD_CONTENDED) + delta[0];
            let wait = at(FIELD_WAIT) + delta[1];
            if count > 0 {
                rep.seen[slot] = true;
            }
            if count == 0 && contended == 0 && !rep.seen[slot] {
                continue;
            }
            let (t, wait_ticks) = out.entry((e.key, e.mode_of[m])).or_default();
            *t.acquired.get_or_insert(0) += count;
            t.contended += contended;
            *wait_ticks += wait;
        }
    }
    out.into_iter()
        .map(|(key, (mut t, wait_ticks))| {
            // Every contended acquisition is timed and an uncontended one
            // waits 0: the total wait is exact.
            t.wait_ns = Some(super::clock::to_ns(wait_ticks, ns_per_tick));
            (key, t)
        })
        .collect()
}

/// Acquisitions of names beyond [`MAX_SITES`], since the process started.
pub(super) fn overflowed() -> u64 {
    OVERFLOW.load(Relaxed)
}

/// Marks everything counted so far as reported: a new session starts at 0.
pub(super) fn reset_baseline() {
    let _ = take_deltas(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threads_site_cache_finds_every_name_it_has_met_up_to_its_limit() {
        let mut cache = SiteCache::new();
        let ids = |n: usize| (0..n).map(|i| (0x1000, 0x8000 + 16 * i, 11));
        for (i, id) in ids(10_000).enumerate() {
            cache.insert(id, i as u32 + 1);
        }
        for (i, id) in ids(10_000).enumerate() {
            assert_eq!(cache.get(id), Some(i as u32 + 1));
        }
        assert_eq!(cache.get((0x1000, 0x8000, 12)), None);
        // Beyond half of MAX it forgets and starts again, never full.
        for (i, id) in ids(SiteCache::MAX).enumerate() {
            cache.insert(id, i as u32 + 1);
        }
        assert!(cache.used <= SiteCache::MAX / 2);
        let last = ids(SiteCache::MAX).next_back().unwrap_or_default();
        assert_eq!(cache.get(last), Some(SiteCache::MAX as u32));
    }
}
