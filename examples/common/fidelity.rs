//! Fidelity workloads: programs that time their own locking with `Instant`,
//! as a user would, and compare what they measured with what the profile says.
//!
//! Shared by `examples/fidelity.rs` (the full table) and `tests/fidelity_*.rs`
//! (bounded runs), each of which includes this file with `#[path]`.
//!
//! # The truth
//!
//! Every workload thread keeps its own tallies per lock: the time around each
//! `lock()` call (wait) and from `lock()`'s return to just before the guard's
//! drop (hold), with their sums of squares, and how often each call site
//! took the lock. Only what a caller can time is timed:
//! - a re-entrant mutex's nested acquisitions are inside the outer one's hold
//!   and are not counted (the profiler records only the outermost);
//! - a condvar's `wait()` re-acquires the mutex where the caller cannot time
//!   it: the re-acquisition is counted, the time in `wait()` is neither wait
//!   nor hold, and the wait row of that lock is shown but not checked.
//!
//! What a caller's timers see differs from the lock's wait and hold in ways
//! measured once (at 100 % capture) by [`calibration`], on one thread taking an
//! uncontended lock, and accounted for in the truth:
//! - the caller's wait includes the profiler's own work inside a sampled
//!   `lock()` (stack capture, hand-off), which the profile does not count as
//!   waiting: the truth's wait is reported less `N × capture × own work`;
//! - the caller's wait includes its own timer reads and the lock's fast path
//!   even when nothing waits (the profile counts 0): less `N × floor`;
//! - the profile's hold spans a little more than the caller's (its clock is
//!   read before `lock()` returns and inside the drop, around the caller's
//!   own timer reads): the truth's hold is reported plus `N × excess`.
//!
//! A wait or hold whose target is not at least twice the correction made to
//! its truth is below what the timers resolve: shown, not checked. What is
//! not accounted for: time a thread spends preempted inside `lock()`
//! on an uncontended lock is in the caller's wait but is no lock wait, and
//! the first acquisition of a new lock registers its counters (a lock per
//! request pays it every time).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use lockprof::read::{labels, profile_files, LockProfile, LockSample, Pick};
use lockprof::{
    named, ProfiledCondvar, ProfiledMutex, ProfiledMutexGuard, ProfiledReentrantMutex, ProfiledRwLock,
    Profiler,
};

/// Sum and sum of squares of a quantity, in nanoseconds.
#[derive(Default, Clone, Copy, Debug)]
pub struct Moments {
    pub sum: f64,
    pub sq: f64,
}

impl Moments {
    #[inline]
    fn add(&mut self, d: Duration) {
        let ns = d.as_nanos() as f64;
        self.sum += ns;
        self.sq += ns * ns;
    }

    fn merge(&mut self, o: Moments) {
        self.sum += o.sum;
        self.sq += o.sq;
    }

    /// The standard deviation of one of `n` values.
    fn sd(&self, n: f64) -> f64 {
        if n < 2.0 {
            return 0.0;
        }
        let mean = self.sum / n;
        ((self.sq / n - mean * mean).max(0.0) * n / (n - 1.0)).sqrt()
    }
}

/// One lock's (or one mode's) measured acquisitions.
#[derive(Default, Clone, Debug)]
pub struct Tally {
    pub count: u64,
    pub wait: Moments,
    pub hold: Moments,
    /// Acquisitions from `from_site_a` and `from_site_b`.
    pub sites: [u64; 2],
}

impl Tally {
    fn merge(&mut self, o: &Tally) {
        self.count += o.count;
        self.wait.merge(o.wait);
        self.hold.merge(o.hold);
        self.sites[0] += o.sites[0];
        self.sites[1] += o.sites[1];
    }
}

/// A guard and when its `lock()` returned.
pub struct Held<G> {
    pub guard: G,
    since: Instant,
}

/// Times one `lock()` call as a caller would.
#[inline(always)]
pub fn timed<G>(tally: &mut Tally, lock: impl FnOnce() -> G) -> Held<G> {
    let t0 = Instant::now();
    let guard = lock();
    let since = Instant::now();
    tally.count += 1;
    tally.wait.add(since - t0);
    Held { guard, since }
}

/// Ends a guard's life, timing its hold up to the drop.
#[inline(always)]
pub fn release<G>(tally: &mut Tally, held: Held<G>) {
    tally.hold.add(held.since.elapsed());
    drop(held.guard);
}

/// What a workload measured, per lock (and mode).
#[derive(Default, Debug)]
pub struct Truth {
    pub locks: Vec<LockTruth>,
}

#[derive(Debug)]
pub struct LockTruth {
    /// Short name for the table.
    pub name: String,
    /// The profile's `lock name` label.
    pub label: String,
    /// The `lock mode` label, for read-write locks.
    pub mode: Option<&'static str>,
    pub tally: Tally,
    /// Whether the profiler counts this mode exactly.
    pub exact_count: bool,
    /// Whether every wait the profile counts is one the caller timed.
    pub wait_timed: bool,
    /// Whether acquisitions came from two call sites.
    pub two_sites: bool,
}

impl LockTruth {
    fn new(name: &str, label: String, tallies: impl IntoIterator<Item = Tally>) -> Self {
        let mut tally = Tally::default();
        for t in tallies {
            tally.merge(&t);
        }
        LockTruth {
            name: name.to_owned(),
            label,
            mode: None,
            two_sites: tally.sites[1] > 0,
            tally,
            exact_count: true,
            wait_timed: true,
        }
    }
}

/// One shape of program.
#[derive(Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    /// Runs the program, `scale` times its full size.
    pub run: fn(f64) -> Truth,
}

/// Every workload, in table order.
pub fn all() -> Vec<Workload> {
    #[cfg_attr(not(feature = "tokio"), allow(unused_mut))]
    let mut w = vec![
        Workload {
            name: "heavy-tailed holds, 4 threads",
            run: heavy_tail,
        },
        Workload {
            name: "short sections, 2 threads",
            run: |s| short_sections(2, s),
        },
        Workload {
            name: "short sections, 8 threads",
            run: |s| short_sections(8, s),
        },
        Workload {
            name: "short sections, 32 threads",
            run: |s| short_sections(32, s),
        },
        Workload {
            name: "rwlock, 4 readers 2 writers",
            run: readers_and_writers,
        },
        Workload {
            name: "condvar queue, 2+2 threads",
            run: condvar_queue,
        },
        Workload {
            name: "re-entrant mutex, 4 threads",
            run: reentrant,
        },
        Workload {
            name: "two call sites 1:3, 4 threads",
            run: two_sites,
        },
        Workload {
            name: "locks per request, 4 threads",
            run: per_request,
        },
    ];
    #[cfg(feature = "tokio")]
    w.push(Workload {
        name: "async mutex across .await",
        run: async_mutex,
    });
    w
}

/// The workload named `name`.
pub fn by_name(name: &str) -> Workload {
    all()
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no workload {name:?}"))
}

fn ops(base: usize, scale: f64) -> usize {
    ((base as f64 * scale) as usize).max(1)
}

fn join<T>(handles: Vec<thread::JoinHandle<T>>) -> Vec<T> {
    handles
        .into_iter()
        .map(|h| h.join().expect("workload thread"))
        .collect()
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[inline(never)]
fn from_site_a<'a, T>(m: &'a ProfiledMutex<T>, t: &mut Tally) -> Held<ProfiledMutexGuard<'a, T>> {
    t.sites[0] += 1;
    timed(t, || m.lock().expect("poisoned"))
}

#[inline(never)]
fn from_site_b<'a, T>(m: &'a ProfiledMutex<T>, t: &mut Tally) -> Held<ProfiledMutexGuard<'a, T>> {
    t.sites[1] += 1;
    timed(t, || m.lock().expect("poisoned"))
}

/// The program: three locks, one sometimes held across a 200 µs
/// sleep and taken from two call sites 3:1.
fn heavy_tail(scale: f64) -> Truth {
    named!(let contended = Arc::new(ProfiledMutex::new(0u64)));
    named!(let counter = Arc::new(ProfiledMutex::new(0u64)));
    named!(let settings = Arc::new(ProfiledMutex::new(7u64)));
    let n = ops(10_000, scale);
    let per_thread = join(
        (0..4u64)
            .map(|seed| {
                let (contended, counter, settings) = (contended.clone(), counter.clone(), settings.clone());
                thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(seed);
                    let mut t = [Tally::default(), Tally::default(), Tally::default()];
                    for i in 0..n {
                        let mut h = if i % 4 == 3 {
                            from_site_b(&contended, &mut t[0])
                        } else {
                            from_site_a(&contended, &mut t[0])
                        };
                        *h.guard += 1;
                        if rng.u32(..64) == 0 {
                            thread::sleep(Duration::from_micros(200));
                        }
                        release(&mut t[0], h);
                        let mut h = timed(&mut t[1], || counter.lock().expect("poisoned"));
                        *h.guard += 1;
                        release(&mut t[1], h);
                        let h = timed(&mut t[2], || settings.lock().expect("poisoned"));
                        std::hint::black_box(*h.guard);
                        release(&mut t[2], h);
                    }
                    t
                })
            })
            .collect(),
    );
    Truth {
        locks: vec![
            LockTruth::new(
                "contended",
                contended.site().label(),
                per_thread.iter().map(|t| t[0].clone()),
            ),
            LockTruth::new(
                "counter",
                counter.site().label(),
                per_thread.iter().map(|t| t[1].clone()),
            ),
            LockTruth::new(
                "settings",
                settings.site().label(),
                per_thread.iter().map(|t| t[2].clone()),
            ),
        ],
    }
}

/// Many short critical sections on one lock.
fn short_sections(threads: usize, scale: f64) -> Truth {
    named!(let shared = Arc::new(ProfiledMutex::new([0u64; 4])));
    let n = ops(120_000, scale) / threads;
    let per_thread = join(
        (0..threads)
            .map(|_| {
                let shared = shared.clone();
                thread::spawn(move || {
                    let mut t = Tally::default();
                    for i in 0..n as u64 {
                        let mut h = timed(&mut t, || shared.lock().expect("poisoned"));
                        h.guard[(i % 4) as usize] =
                            h.guard[(i % 4) as usize].wrapping_mul(31).wrapping_add(i);
                        release(&mut t, h);
                    }
                    t
                })
            })
            .collect(),
    );
    Truth {
        locks: vec![LockTruth::new("shared", shared.site().label(), per_thread)],
    }
}

/// Readers beside writers; writers sometimes hold for 50 µs.
fn readers_and_writers(scale: f64) -> Truth {
    named!(let table = Arc::new(ProfiledRwLock::new(vec![1u64; 16])));
    let n = ops(12_000, scale);
    let per_thread = join(
        (0..6u64)
            .map(|i| {
                let table = table.clone();
                thread::spawn(move || {
                    let mut t = Tally::default();
                    let writer = i >= 4;
                    for j in 0..if writer { n / 2 } else { n } {
                        if writer {
                            let mut h = timed(&mut t, || table.write().expect("poisoned"));
                            h.guard[j % 16] += 1;
                            if j % 32 == 0 {
                                spin(Duration::from_micros(50));
                            }
                            release(&mut t, h);
                        } else {
                            let h = timed(&mut t, || table.read().expect("poisoned"));
                            std::hint::black_box(h.guard.iter().sum::<u64>());
                            release(&mut t, h);
                        }
                    }
                    (writer, t)
                })
            })
            .collect(),
    );
    let label = table.site().label();
    let mode = |writer: bool, name: &'static str| {
        let mut l = LockTruth::new(
            &format!("table ({name})"),
            label.clone(),
            per_thread
                .iter()
                .filter(|(w, _)| *w == writer)
                .map(|(_, t)| t.clone()),
        );
        l.mode = Some(name);
        l.exact_count = writer;
        l
    };
    Truth {
        locks: vec![mode(false, "read"), mode(true, "write")],
    }
}

/// Two producers, two consumers, a mutex-guarded queue and a condvar.
fn condvar_queue(scale: f64) -> Truth {
    named!(let queue = Arc::new(ProfiledMutex::new(std::collections::VecDeque::<Option<u64>>::new())));
    let ready = Arc::new(ProfiledCondvar::new());
    let n = ops(15_000, scale) as u64;
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (queue, ready) = (queue.clone(), ready.clone());
            thread::spawn(move || {
                let mut t = Tally::default();
                loop {
                    let mut h = timed(&mut t, || queue.lock().expect("poisoned"));
                    let item = loop {
                        if let Some(item) = h.guard.pop_front() {
                            break item;
                        }
                        t.hold.add(h.since.elapsed());
                        h.guard = ready.wait(h.guard).expect("poisoned");
                        h.since = Instant::now();
                        t.count += 1;
                    };
                    release(&mut t, h);
                    match item {
                        Some(v) => {
                            std::hint::black_box(v);
                        }
                        None => return t,
                    }
                }
            })
        })
        .collect();
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let (queue, ready) = (queue.clone(), ready.clone());
            thread::spawn(move || {
                let mut t = Tally::default();
                for i in 0..n {
                    let mut h = timed(&mut t, || queue.lock().expect("poisoned"));
                    h.guard.push_back(Some(i));
                    release(&mut t, h);
                    ready.notify_one();
                }
                t
            })
        })
        .collect();
    let mut tallies = join(producers);
    let mut t = Tally::default();
    for _ in 0..2 {
        let mut h = timed(&mut t, || queue.lock().expect("poisoned"));
        h.guard.push_back(None);
        release(&mut t, h);
        ready.notify_all();
    }
    tallies.push(t);
    tallies.extend(join(consumers));
    let mut l = LockTruth::new("queue", queue.site().label(), tallies);
    l.wait_timed = false;
    Truth { locks: vec![l] }
}

/// An outer acquisition with a nested one inside it.
fn reentrant(scale: f64) -> Truth {
    named!(let reentrant = Arc::new(ProfiledReentrantMutex::new(std::cell::Cell::new(0u64))));
    let n = ops(15_000, scale);
    let per_thread = join(
        (0..4)
            .map(|_| {
                let reentrant = reentrant.clone();
                thread::spawn(move || {
                    let mut t = Tally::default();
                    for i in 0..n {
                        let h = timed(&mut t, || reentrant.lock());
                        h.guard.set(h.guard.get() + 1);
                        {
                            let inner = reentrant.lock();
                            inner.set(inner.get() + 1);
                            if i % 64 == 0 {
                                spin(Duration::from_micros(20));
                            }
                        }
                        release(&mut t, h);
                    }
                    t
                })
            })
            .collect(),
    );
    Truth {
        locks: vec![LockTruth::new("reentrant", reentrant.site().label(), per_thread)],
    }
}

/// One lock taken from two call sites, one acquisition in four from site a.
fn two_sites(scale: f64) -> Truth {
    named!(let split = Arc::new(ProfiledMutex::new(0u64)));
    let n = ops(15_000, scale);
    let per_thread = join(
        (0..4)
            .map(|_| {
                let split = split.clone();
                thread::spawn(move || {
                    let mut t = Tally::default();
                    for i in 0..n {
                        let mut h = if i % 4 == 0 {
                            from_site_a(&split, &mut t)
                        } else {
                            from_site_b(&split, &mut t)
                        };
                        *h.guard += 1;
                        if i % 128 == 0 {
                            spin(Duration::from_micros(20));
                        }
                        release(&mut t, h);
                    }
                    t
                })
            })
            .collect(),
    );
    Truth {
        locks: vec![LockTruth::new("split", split.site().label(), per_thread)],
    }
}

/// A new lock per request, taken three times and dropped.
fn per_request(scale: f64) -> Truth {
    let n = ops(4_000, scale);
    let label = Arc::new(OnceLock::new());
    let per_thread = join(
        (0..4)
            .map(|_| {
                let label = label.clone();
                thread::spawn(move || {
                    let mut t = Tally::default();
                    for i in 0..n as u64 {
                        named!(let session = ProfiledMutex::new(i));
                        label.get_or_init(|| session.site().label());
                        for _ in 0..3 {
                            let mut h = timed(&mut t, || session.lock().expect("poisoned"));
                            *h.guard += 1;
                            release(&mut t, h);
                        }
                    }
                    t
                })
            })
            .collect(),
    );
    let label = label.get().cloned().unwrap_or_default();
    let mut l = LockTruth::new("session (per request)", label, per_thread);
    // No other thread sees these locks, so they never wait; what the
    // caller's timer sees is the first acquisition registering the new
    // lock's counters (the profiler's work) and preemption.
    l.wait_timed = false;
    Truth { locks: vec![l] }
}

/// Tasks on a 4-thread runtime hold an async mutex across `.await`s.
#[cfg(feature = "tokio")]
fn async_mutex(scale: f64) -> Truth {
    use lockprof::ProfiledAsyncMutex;
    named!(let state = Arc::new(ProfiledAsyncMutex::new(0u64)));
    let n = ops(2_000, scale);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let tallies = rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let state = state.clone();
                tokio::spawn(async move {
                    let mut t = Tally::default();
                    for i in 0..n {
                        let t0 = Instant::now();
                        let mut guard = state.lock().await;
                        let since = Instant::now();
                        t.count += 1;
                        t.wait.add(since - t0);
                        *guard += 1;
                        tokio::task::yield_now().await;
                        if i % 8 == 0 {
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                        t.hold.add(since.elapsed());
                        drop(guard);
                    }
                    t
                })
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("task"));
        }
        out
    });
    Truth {
        locks: vec![LockTruth::new("state (async)", state.site().label(), tallies)],
    }
}

/// What the caller's timers cannot see, per capture rate, measured on one
/// thread taking an uncontended lock (so that every wait is 0 and every
/// difference is the profiler's).
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    /// The profiler's own work inside a sampled `lock()` (stack capture and
    /// hand-off), nanoseconds per sampled acquisition: the caller's timer
    /// includes it, the profile's wait does not.
    pub own_work_ns: f64,
    /// How much longer the profile's hold is than the caller's, nanoseconds
    /// per acquisition: the profiler reads its clock before `lock()` returns
    /// and again inside the guard's drop, so its hold also spans the
    /// caller's own timer reads and the return and drop paths (the lock is
    /// held meanwhile). Estimated holds carry the sampled acquisitions'
    /// excess to every acquisition.
    pub hold_excess_ns: f64,
    /// What the caller's timer reads around a `lock()` that does not wait,
    /// with no profiler: its own reads and the uncontended lock. The profile
    /// counts 0 there, so the truth's wait is reported less `N × floor`.
    pub timer_floor_ns: f64,
}

/// The [`Calibration`], measured once per process at 100 % capture (where
/// every acquisition shows it; at lower rates it is the same work, but the
/// mean difference is too small to measure against the timers' noise).
pub fn calibration() -> Calibration {
    static DONE: OnceLock<Calibration> = OnceLock::new();
    *DONE.get_or_init(|| {
        let _turn = turn();
        calibrate(100.0)
    })
}

fn calibrate(capture_pct: f64) -> Calibration {
    let p = capture_pct / 100.0;
    // About 400 sampled acquisitions.
    let n = ((400.0 / p) as usize).clamp(4_000, 40_000);
    let run = |label: &OnceLock<String>| {
        thread::scope(|s| {
            s.spawn(|| {
                named!(let calibration = ProfiledMutex::new(0u64));
                let _ = label.set(calibration.site().label());
                let mut t = Tally::default();
                for _ in 0..n {
                    let mut h = timed(&mut t, || calibration.lock().expect("poisoned"));
                    *h.guard += 1;
                    release(&mut t, h);
                    // Let the recorder keep up, so that nothing is dropped.
                    if t.count % 64 == 0 {
                        thread::sleep(Duration::from_micros(200));
                    }
                }
                t
            })
            .join()
            .expect("calibration thread")
        })
    };
    let off = run(&OnceLock::new());
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = dir.path().join("calibration");
    let profiler = Profiler::builder()
        .capture_pct(capture_pct)
        .flush_interval(Duration::from_secs(3600))
        .output_pprof(&prefix)
        .start()
        .expect("start profiler");
    let label = OnceLock::new();
    let on = run(&label);
    profiler.stop();
    let profile = read_all(&prefix);
    let label = label.get().cloned().unwrap_or_default();
    let profile_hold: f64 = profile.samples_of(&label).map(|s| s.release_hold_ns as f64).sum();
    let n = n as f64;
    Calibration {
        own_work_ns: ((on.wait.sum - off.wait.sum) / (n * p)).max(0.0),
        hold_excess_ns: (profile_hold - on.hold.sum) / n,
        timer_floor_ns: off.wait.sum / n,
    }
}

/// Every profile written under `prefix`, merged.
fn read_all(prefix: &Path) -> LockProfile {
    let mut profile: Option<LockProfile> = None;
    for file in profile_files(prefix, Pick::All).expect("profile files") {
        let p = LockProfile::from_file(&file).expect("read profile");
        let _ = std::fs::remove_file(&file);
        match profile.as_mut() {
            Some(all) => all.merge(p),
            None => profile = Some(p),
        }
    }
    profile.expect("a profile was written")
}

/// One profiler per process: runs take turns.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one row compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    Count,
    Wait,
    Hold,
    /// Site a's share of the acquisitions, in percent.
    SiteShare,
}

impl Measure {
    pub fn name(self) -> &'static str {
        match self {
            Measure::Count => "count",
            Measure::Wait => "wait",
            Measure::Hold => "hold",
            Measure::SiteShare => "site a %",
        }
    }
}

/// One comparison of the profile with the truth.
#[derive(Clone, Debug)]
pub struct Row {
    pub workload: &'static str,
    pub lock: String,
    pub capture_pct: f64,
    pub measure: Measure,
    /// Acquisitions of the lock (in this mode), as timed.
    pub acquisitions: u64,
    pub truth: f64,
    pub profile: f64,
    /// Four standard errors of the sampled estimate, from the truth's own
    /// spread and the expected number of samples (0 where it is exact).
    pub four_sigma: f64,
    /// Whether the row is checked (see [`LockTruth::wait_timed`]).
    pub checked: bool,
    /// The size of the corrections made to the truth (see [`Calibration`]):
    /// a row whose target is not at least twice this is below what the
    /// caller's timers can resolve, and is shown but not checked.
    pub resolution: f64,
}

impl Row {
    /// Relative error, or points for a share.
    pub fn error(&self) -> f64 {
        match self.measure {
            Measure::SiteShare => self.profile - self.truth,
            _ if self.truth == 0.0 => {
                if self.profile == 0.0 {
                    0.0
                } else {
                    f64::INFINITY
                }
            }
            _ => (self.profile - self.truth) / self.truth,
        }
    }

    /// The target for this row, as a bound on [`Row::error`]; `None`
    /// for exact.
    pub fn target(&self) -> Option<f64> {
        match self.measure {
            Measure::Count if self.four_sigma == 0.0 => None,
            Measure::SiteShare => Some(5.0),
            Measure::Count => Some(self.four_sigma / self.truth.max(1.0)),
            Measure::Wait | Measure::Hold => {
                if self.capture_pct >= 100.0 {
                    Some(0.03)
                } else if self.capture_pct <= lockprof::DEFAULT_CAPTURE_PCT && self.acquisitions >= 10_000 {
                    Some(0.25)
                } else {
                    Some(self.four_sigma / self.truth.max(1.0))
                }
            }
        }
    }

    /// Whether the row's target is coarser than twice the corrections made
    /// to its truth.
    pub fn resolved(&self) -> bool {
        match (self.measure, self.target()) {
            (Measure::Wait | Measure::Hold, Some(t)) => self.resolution <= 0.5 * t * self.truth.abs(),
            _ => true,
        }
    }

    pub fn target_text(&self) -> String {
        if !self.checked {
            return "not checked".into();
        }
        if !self.resolved() {
            return "below resolution".into();
        }
        match (self.measure, self.target()) {
            (_, None) => "exact".into(),
            (Measure::SiteShare, Some(t)) => format!("±{t:.0} pts"),
            (m, Some(t)) => {
                let statistical = m == Measure::Count
                    || self.capture_pct < 100.0
                        && !(self.capture_pct <= lockprof::DEFAULT_CAPTURE_PCT
                            && self.acquisitions >= 10_000);
                let sigma = if statistical { " (4σ)" } else { "" };
                format!("±{:.1}%{sigma}", t * 100.0)
            }
        }
    }

    /// Whether the target is met.
    pub fn ok(&self) -> bool {
        !self.checked
            || !self.resolved()
            || match self.target() {
                None => self.profile == self.truth,
                Some(t) => self.error().abs() <= t,
            }
    }

    /// The statistical check the tests make: within four standard errors
    /// of the sampled estimate, and within `floor` (a fraction, or points
    /// for a share) where sampling is not the limit.
    pub fn within_sampling_error(&self, floor: f64) -> bool {
        // Rows shown as below resolution are not checked, as the README
        // says: their truth's corrections are too coarse for their target.
        if !self.checked
            || !self.resolved()
            || self.resolution > 0.5 * self.four_sigma.max(floor * self.truth.abs())
        {
            return true;
        }
        match self.measure {
            Measure::Count if self.four_sigma == 0.0 => self.profile == self.truth,
            Measure::SiteShare => self.error().abs() <= self.four_sigma.max(floor),
            _ => (self.profile - self.truth).abs() <= self.four_sigma.max(floor * self.truth),
        }
    }
}

/// One run of a workload at one capture rate.
#[derive(Debug)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub events_dropped: u64,
    /// The profile the rows were read from.
    pub profile: LockProfile,
}

/// Runs `workload` at `capture_pct` under a profiler writing into `dir`
/// (one profile: a long flush interval and `stop`), reads the profile back
/// and compares it with the truth.
pub fn measure(workload: Workload, capture_pct: f64, scale: f64, dir: &Path) -> Outcome {
    let cal = calibration();
    let _turn = turn();
    let prefix = dir.join(format!("fidelity-{}", (capture_pct * 1000.0) as u64));
    let profiler = Profiler::builder()
        .capture_pct(capture_pct)
        .flush_interval(Duration::from_secs(3600))
        .output_pprof(&prefix)
        .start()
        .expect("start profiler");
    let truth = (workload.run)(scale);
    let stats = profiler.stop();
    let profile = read_all(&prefix);
    let p = capture_pct / 100.0;
    let mut rows = Vec::new();
    for lock in &truth.locks {
        let samples: Vec<&LockSample> = profile
            .samples_of(&lock.label)
            .filter(|s| lock.mode.is_none() || s.label_str(labels::LOCK_MODE) == lock.mode)
            .collect();
        let n = lock.tally.count as f64;
        // Sampling each acquisition with probability p, a total scaled by
        // 1/p has standard error sqrt(n (1 - p) / p) × the values' spread.
        let scale_se = (n * (1.0 - p) / p.max(1e-9)).sqrt();
        let row = |measure, truth: f64, profile: f64, four_sigma: f64, checked, resolution| Row {
            workload: workload.name,
            lock: lock.name.clone(),
            capture_pct,
            measure,
            acquisitions: lock.tally.count,
            truth,
            profile,
            four_sigma,
            checked,
            resolution,
        };
        let sum = |f: fn(&LockSample) -> i64| samples.iter().map(|s| f(s) as f64).sum::<f64>();
        // An estimated count also misses the events dropped on a full queue
        // (at most all of them were this lock's, each standing for 1/p).
        let count_sigma = if lock.exact_count {
            0.0
        } else {
            4.0 * scale_se + stats.events_dropped as f64 / p
        };
        rows.push(row(Measure::Count, n, sum(|s| s.acquire), count_sigma, true, 0.0));
        let wait_correction = n * (p * cal.own_work_ns + cal.timer_floor_ns);
        let wait_truth = lock.tally.wait.sum - wait_correction;
        rows.push(row(
            Measure::Wait,
            wait_truth,
            sum(|s| s.acquire_wait_ns),
            4.0 * scale_se * lock.tally.wait.sd(n),
            lock.wait_timed,
            wait_correction,
        ));
        rows.push(row(
            Measure::Hold,
            lock.tally.hold.sum + n * cal.hold_excess_ns,
            sum(|s| s.release_hold_ns),
            4.0 * scale_se * lock.tally.hold.sd(n),
            true,
            n * cal.hold_excess_ns.abs(),
        ));
        if lock.two_sites {
            let from = |site: &str| {
                samples
                    .iter()
                    .filter(|s| s.frames.iter().any(|f| f.function.contains(site)))
                    .map(|s| s.acquire as f64)
                    .sum::<f64>()
            };
            let (a, b) = (from("from_site_a"), from("from_site_b"));
            let share = 100.0 * lock.tally.sites[0] as f64 / n;
            let q = share / 100.0;
            // A binomial share over the expected number of sampled ones.
            let sigma = 100.0 * (q * (1.0 - q) / (n * p).max(1.0)).sqrt();
            // No stack reaching either call site means stack capture itself
            // is broken (tests/stacks_lead_to_the_caller.rs), not the split.
            let resolved = a + b > 0.0;
            if !resolved {
                eprintln!(
                    "{}: no sampled stack reaches from_site_a or from_site_b",
                    lock.name
                );
            }
            rows.push(row(
                Measure::SiteShare,
                share,
                if resolved { 100.0 * a / (a + b) } else { 0.0 },
                4.0 * sigma,
                resolved,
                0.0,
            ));
        }
    }
    Outcome {
        rows,
        events_dropped: stats.events_dropped,
        profile,
    }
}

/// Formats nanoseconds, or a count, for the table.
pub fn show(measure: Measure, v: f64) -> String {
    match measure {
        Measure::Count => format!("{v:.0}"),
        Measure::SiteShare => format!("{v:.1}"),
        _ if v.abs() >= 1e9 => format!("{:.3} s", v / 1e9),
        _ if v.abs() >= 1e6 => format!("{:.2} ms", v / 1e6),
        _ => format!("{:.1} µs", v / 1e3),
    }
}

/// The table's header and one line per row.
pub fn table_header() -> String {
    format!(
        "{:<32} {:<22} {:>7} {:<9} {:>12} {:>12} {:>8} {:>8} {:<16} {}",
        "workload", "lock", "capture", "measure", "truth", "profile", "error", "4σ", "target", "ok"
    )
}

pub fn table_line(r: &Row) -> String {
    let error = match r.measure {
        Measure::SiteShare => format!("{:+.1} pt", r.error()),
        _ => format!("{:+.1}%", r.error() * 100.0),
    };
    let four_sigma = match r.measure {
        Measure::SiteShare => format!("{:.1} pt", r.four_sigma),
        _ => format!("{:.1}%", 100.0 * r.four_sigma / r.truth.abs().max(1.0)),
    };
    format!(
        "{:<32} {:<22} {:>6}% {:<9} {:>12} {:>12} {:>8} {:>8} {:<16} {}",
        r.workload,
        r.lock,
        r.capture_pct,
        r.measure.name(),
        show(r.measure, r.truth),
        show(r.measure, r.profile),
        error,
        four_sigma,
        r.target_text(),
        if r.ok() { "ok" } else { "MISSED" }
    )
}

/// [`assert_within_sampling_error`] for a sampled run, `run` made again
/// once if a row misses. Four standard errors would be missed once in
/// 16,000 rows by a normal estimate, but a sampled hold is heavy-tailed (one
/// preempted holder in the sample moves it), and the suite checks about a
/// hundred sampled rows on a loaded 2-core CI machine: a single miss there
/// is not evidence of a fault. A biased estimate misses in both runs, and
/// only the second run is asserted. Returns the outcome that passed.
#[allow(dead_code)]
pub fn assert_sampled_within_error(mut run: impl FnMut() -> Outcome, floor: f64) -> Outcome {
    let first = run();
    let missed = outside_sampling_error(&first, floor);
    if missed.is_empty() {
        assert_within_sampling_error(&first, floor);
        return first;
    }
    eprintln!(
        "outside 4 standard errors in the first run, which is made once more:\n{}",
        missed.join("\n")
    );
    let second = run();
    assert_within_sampling_error(&second, floor);
    second
}

/// The table lines of the rows outside their sampling error.
fn outside_sampling_error(outcome: &Outcome, floor: f64) -> Vec<String> {
    outcome
        .rows
        .iter()
        .filter(|r| !r.within_sampling_error(floor))
        .map(table_line)
        .collect()
}

/// Asserts that every row is within its sampling error (see
/// [`Row::within_sampling_error`]), printing the table either way.
pub fn assert_within_sampling_error(outcome: &Outcome, floor: f64) {
    eprintln!("{}", table_header());
    for r in &outcome.rows {
        eprintln!("{}", table_line(r));
    }
    let bad = outside_sampling_error(outcome, floor);
    assert!(
        bad.is_empty(),
        "outside 4 standard errors (or ±{:.0}%), {} events dropped:\n{}",
        floor * 100.0,
        outcome.events_dropped,
        bad.join("\n")
    );
}

/// Rows with the same workload, lock, capture and measure, across runs.
pub fn group(runs: &[Outcome]) -> BTreeMap<(String, String, u64, &'static str), Vec<Row>> {
    let mut out: BTreeMap<_, Vec<Row>> = BTreeMap::new();
    for o in runs {
        for r in &o.rows {
            out.entry((
                r.workload.to_owned(),
                r.lock.clone(),
                (r.capture_pct * 1000.0) as u64,
                r.measure.name(),
            ))
            .or_default()
            .push(r.clone());
        }
    }
    out
}
