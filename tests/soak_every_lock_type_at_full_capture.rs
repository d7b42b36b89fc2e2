//! Soak: many threads over every lock type at 100% capture, with periodic
//! flushes; with the `tokio` feature, tasks on a multi-thread runtime take the
//! async locks (mutex, read-write lock in both modes, semaphore) alongside the
//! threads. Checks that nothing deadlocks (a watchdog ends the process if
//! progress stops), that per-lock counts summed over every flushed profile
//! equal the counts kept by the test, reads included, that RSS stays flat after warm-up,
//! and that no flush takes longer than its interval.
//!
//! The default suite runs a 20 s version; `scripts/soak.sh` runs the 5-minute
//! one (`#[ignore]`d here) and prints one line per check.

mod common;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{merged, profiles_in, serial, totals, totals_for_mode};
use lockprof::{
    named, EncodedProfile, Export, ExportError, FileExporter, ProfiledCondvar, ProfiledMutex,
    ProfiledReentrantMutex, ProfiledRwLock, Profiler,
};

named!(static SOAK_MUTEX: ProfiledMutex<u64> = ProfiledMutex::new(0));
named!(static SOAK_RWLOCK: ProfiledRwLock<u64> = ProfiledRwLock::new(0));
named!(static SOAK_CV_MUTEX: ProfiledMutex<u64> = ProfiledMutex::new(0));
static SOAK_CONDVAR: ProfiledCondvar = ProfiledCondvar::new();
named!(static SOAK_REENTRANT: ProfiledReentrantMutex<Cell<u64>> = ProfiledReentrantMutex::new(Cell::new(0)));

#[test]
fn soak_20_seconds() {
    let report = soak(Duration::from_secs(20), Duration::from_secs(4), 64);
    report.print();
    report.assert_passed();
}

#[test]
#[ignore = "5 minutes: run by scripts/soak.sh"]
fn soak_5_minutes() {
    let secs = std::env::var("LOCKPROF_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let report = soak(Duration::from_secs(secs), Duration::from_secs(5), 64);
    report.print();
    report.assert_passed();
}

/// Exact counts kept by the workload, per lock and mode.
#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    mutex: u64,
    read: u64,
    write: u64,
    cv_mutex: u64,
    reentrant: u64,
    /// The async locks' counts, kept by the tasks.
    #[cfg(feature = "tokio")]
    tasks: async_load::AsyncCounts,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.mutex += o.mutex;
        self.read += o.read;
        self.write += o.write;
        self.cv_mutex += o.cv_mutex;
        self.reentrant += o.reentrant;
    }
}

struct Check {
    name: &'static str,
    passed: bool,
    figure: String,
}

struct Report(Vec<Check>);

impl Report {
    fn check(&mut self, name: &'static str, passed: bool, figure: String) {
        self.0.push(Check { name, passed, figure });
    }

    /// A count in the profiles that must equal the test's own.
    fn exact(&mut self, name: &'static str, got: i64, want: u64) {
        self.check(name, got as u64 == want, format!("profiles {got}, test {want}"));
    }

    fn print(&self) {
        for c in &self.0 {
            println!(
                "SOAK {} {}: {}",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.figure
            );
        }
    }

    fn assert_passed(&self) {
        let failed: Vec<&str> = self.0.iter().filter(|c| !c.passed).map(|c| c.name).collect();
        assert!(failed.is_empty(), "soak checks failed: {failed:?}");
    }
}

/// Writes files and measures each flush: from the end of its period (taken
/// when the flush starts) to the file being in place.
struct TimedFiles {
    files: FileExporter,
    /// When each period ended, and how long its flush took.
    flushes: Arc<Mutex<Vec<(SystemTime, Duration)>>>,
}

impl Export for TimedFiles {
    fn export(&mut self, profile: &EncodedProfile) -> Result<(), ExportError> {
        let r = self.files.export(profile);
        let took = SystemTime::now().duration_since(profile.end).unwrap_or_default();
        self.flushes.lock().unwrap().push((profile.end, took));
        r
    }

    fn describe(&self) -> String {
        self.files.describe()
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn worker(seed: u64, stop: &AtomicBool, progress: &AtomicU64) -> Counts {
    let mut c = Counts::default();
    let mut x = seed | 1;
    while !stop.load(Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 10 {
            0..=2 => {
                *SOAK_MUTEX.lock().unwrap() += 1;
                c.mutex += 1;
            }
            3..=5 => {
                let _ = *SOAK_RWLOCK.read().unwrap();
                c.read += 1;
            }
            6 => {
                *SOAK_RWLOCK.write().unwrap() += 1;
                c.write += 1;
            }
            7 => {
                let outer = SOAK_REENTRANT.lock();
                let inner = SOAK_REENTRANT.lock();
                inner.set(inner.get() + 1);
                drop(inner);
                drop(outer);
                // Only the outermost acquisition counts.
                c.reentrant += 1;
            }
            8 => {
                let g = SOAK_CV_MUTEX.lock().unwrap();
                c.cv_mutex += 1;
                let (mut g, _) = SOAK_CONDVAR.wait_timeout(g, Duration::from_micros(200)).unwrap();
                // Waking re-acquires the mutex: one more acquisition.
                c.cv_mutex += 1;
                *g += 1;
            }
            _ => {
                *SOAK_CV_MUTEX.lock().unwrap() += 1;
                c.cv_mutex += 1;
                SOAK_CONDVAR.notify_all();
            }
        }
        progress.fetch_add(1, Relaxed);
    }
    c
}

fn soak(duration: Duration, flush_interval: Duration, threads: usize) -> Report {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let flushes = Arc::new(Mutex::new(Vec::new()));
    let handle = Profiler::builder()
        .capture_pct(100.0)
        .flush_interval(flush_interval)
        .export(TimedFiles {
            files: FileExporter::new(dir.path().join("soak")),
            flushes: Arc::clone(&flushes),
        })
        .start()
        .unwrap();

    let stop = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let stall_limit = Duration::from_secs(30).min(duration);
    // The first flush loads the binary's debug info to symbolize (tens of
    // MiB, seconds in a debug build): that is warm-up.
    let warm_up = (duration / 4).max(flush_interval * 2);
    let mut rss: Vec<(Duration, u64)> = Vec::new();
    let started = Instant::now();
    let started_wall = SystemTime::now();

    #[cfg(feature = "tokio")]
    let async_load = Some(async_load::AsyncLoad::start(threads));
    #[cfg(not(feature = "tokio"))]
    let async_load: Option<NoAsyncLoad> = None;

    let (counts, ops, max_stall, stats) = std::thread::scope(|s| {
        // The watchdog: a deadlock anywhere (user locks, flush, stop) ends the
        // process, since nothing could ever join the stuck threads. Threads
        // and tasks are watched apart, so that either stalling is seen while
        // the other still runs; once stopping, joining and the final flush
        // get the same limit.
        let watchdog = s.spawn(|| {
            let counters: Vec<(&str, &AtomicU64)> = std::iter::once(("threads", &progress))
                .chain(async_load.iter().map(|a| ("tasks", a.progress())))
                .collect();
            let mut last: Vec<u64> = counters.iter().map(|(_, c)| c.load(Relaxed)).collect();
            let mut since = vec![Instant::now(); counters.len()];
            let mut stopping_since: Option<Instant> = None;
            let mut max_stall = Duration::ZERO;
            while !done.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if stop.load(Relaxed) {
                    let t0 = *stopping_since.get_or_insert_with(Instant::now);
                    if t0.elapsed() > stall_limit {
                        println!(
                            "SOAK FAIL no deadlock: workers, tasks and the profiler not stopped {:?} after the end of the run",
                            t0.elapsed()
                        );
                        std::process::exit(1);
                    }
                    continue;
                }
                for (i, (who, counter)) in counters.iter().enumerate() {
                    let now = counter.load(Relaxed);
                    if now != last[i] {
                        last[i] = now;
                        since[i] = Instant::now();
                    }
                    max_stall = max_stall.max(since[i].elapsed());
                    if since[i].elapsed() > stall_limit {
                        println!(
                            "SOAK FAIL no deadlock: no progress by the {who} for {:?} after {now} operations",
                            since[i].elapsed()
                        );
                        std::process::exit(1);
                    }
                }
            }
            max_stall
        });
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let (stop, progress) = (&stop, &progress);
                s.spawn(move || {
                    worker(
                        0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1),
                        stop,
                        progress,
                    )
                })
            })
            .collect();
        while started.elapsed() < duration {
            rss.push((started.elapsed(), rss_bytes()));
            std::thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, Relaxed);
        let mut counts = Counts::default();
        for w in workers {
            counts += w.join().unwrap();
        }
        #[cfg(feature = "tokio")]
        if let Some(a) = &async_load {
            counts.tasks = a.finish();
        }
        let stats = handle.stop();
        done.store(true, Relaxed);
        let max_stall = watchdog.join().unwrap();
        let ops = progress.load(Relaxed) + async_load.iter().map(|a| a.progress().load(Relaxed)).sum::<u64>();
        (counts, ops, max_stall, stats)
    });

    let mut report = Report(Vec::new());
    report.check(
        "no deadlock",
        true,
        format!(
            "{ops} operations by {threads} threads{} in {:.0?}; longest pause in progress {max_stall:.1?} (limit {stall_limit:?})",
            if async_load.is_some() {
                format!(" and {threads} tokio tasks")
            } else {
                String::new()
            },
            started.elapsed()
        ),
    );

    let files = profiles_in(dir.path());
    let profile = merged(&files);
    let dropped = stats.events_dropped;
    let (m_acq, _, m_rel, _) = totals(&profile, &SOAK_MUTEX.site().label());
    report.exact("mutex acquisitions exact", m_acq, counts.mutex);
    report.exact("mutex releases exact", m_rel, counts.mutex);
    let rw = SOAK_RWLOCK.site().label();
    let (w_acq, _, w_rel, _) = totals_for_mode(&profile, &rw, "write");
    report.exact("rwlock write acquisitions exact", w_acq, counts.write);
    report.exact("rwlock write releases exact", w_rel, counts.write);
    let (r_acq, _, r_rel, _) = totals_for_mode(&profile, &rw, "read");
    report.exact("rwlock read acquisitions exact", r_acq, counts.read);
    report.exact("rwlock read releases exact", r_rel, counts.read);
    let (c_acq, _, c_rel, _) = totals(&profile, &SOAK_CV_MUTEX.site().label());
    report.exact("condvar mutex acquisitions exact", c_acq, counts.cv_mutex);
    report.exact("condvar mutex releases exact", c_rel, counts.cv_mutex);
    let (re_acq, _, re_rel, _) = totals(&profile, &SOAK_REENTRANT.site().label());
    report.exact("reentrant acquisitions exact", re_acq, counts.reentrant);
    report.exact("reentrant releases exact", re_rel, counts.reentrant);
    #[cfg(feature = "tokio")]
    async_load::check(&mut report, &profile, &counts.tasks);
    let drop_comments: u64 = profile
        .comments
        .iter()
        .filter_map(|c| c.strip_prefix("events recorded: "))
        .filter_map(|c| c.rsplit(": ").next()?.parse::<u64>().ok())
        .sum();
    report.check(
        "dropped events reported",
        drop_comments == dropped,
        format!(
            "{dropped} dropped of {} recorded; profile comments say {drop_comments}",
            stats.events_recorded
        ),
    );

    let flushes = flushes.lock().unwrap().clone();
    let since_start = |t: SystemTime| t.duration_since(started_wall).unwrap_or_default();
    // Warm-up lasts at least until the first flush is done.
    let warm_up = flushes
        .first()
        .map(|(end, took)| since_start(*end) + *took + Duration::from_secs(1))
        .unwrap_or_default()
        .max(warm_up);
    let (warming, steady): (Vec<_>, Vec<_>) =
        flushes.iter().partition(|(end, _)| since_start(*end) < warm_up);
    // After warm-up a profile is written every interval (a slow flush may
    // push one deadline back).
    let expected = ((started.elapsed().saturating_sub(warm_up)).as_secs_f64() / flush_interval.as_secs_f64())
        .floor() as usize;
    report.check(
        "profiles written every interval",
        steady.len() + 1 >= expected && stats.profiles_failed == 0,
        format!(
            "{} profiles after warm-up for {expected} intervals ({} in all), {} failed",
            steady.len(),
            files.len(),
            stats.profiles_failed
        ),
    );
    let longest = steady.iter().map(|(_, took)| *took).max().unwrap_or_default();
    let first = warming
        .first()
        .or(steady.first())
        .map(|(_, took)| *took)
        .unwrap_or_default();
    report.check(
        "no flush longer than its interval",
        !steady.is_empty() && longest < flush_interval,
        format!(
            "longest {longest:.1?} of {} flushes after warm-up, interval {flush_interval:?} (first flush, loading debug info: {first:.1?}; all: {:.1?})",
            steady.len(),
            flushes.iter().map(|(_, took)| *took).collect::<Vec<_>>()
        ),
    );
    let at_warm = rss
        .iter()
        .find(|(t, _)| *t >= warm_up)
        .map(|&(_, b)| b)
        .unwrap_or(0);
    let after: Vec<u64> = rss
        .iter()
        .filter(|(t, _)| *t >= warm_up)
        .map(|&(_, b)| b)
        .collect();
    let max_after = after.iter().copied().max().unwrap_or(0);
    let last = after.last().copied().unwrap_or(0);
    let allowed = (at_warm / 10).max(8 << 20);
    if std::env::var_os("LOCKPROF_SOAK_RSS").is_some() {
        for (t, b) in &rss {
            println!("rss {t:.1?} {:.1} MiB", mib(*b));
        }
    }
    report.check(
        "RSS flat after warm-up",
        !after.is_empty() && max_after.saturating_sub(at_warm) <= allowed,
        format!(
            "{:.1} MiB after {warm_up:?} warm-up, max {:.1} MiB, last {:.1} MiB (allowed growth {:.1} MiB)",
            mib(at_warm),
            mib(max_after),
            mib(last),
            mib(allowed)
        ),
    );

    report
}

/// Without the `tokio` feature there are no tasks to watch.
#[cfg(not(feature = "tokio"))]
enum NoAsyncLoad {}

#[cfg(not(feature = "tokio"))]
impl NoAsyncLoad {
    fn progress(&self) -> &AtomicU64 {
        match *self {}
    }
}

/// Tasks on a multi-thread tokio runtime over every async lock type, running
/// alongside the threads.
#[cfg(feature = "tokio")]
mod async_load {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::sync::{Arc, Mutex};

    use lockprof::read::LockProfile;
    use lockprof::{named, ProfiledAsyncMutex, ProfiledAsyncRwLock, ProfiledSemaphore};
    use tokio::task::yield_now;

    use super::{totals, totals_for_mode, Report};

    named!(static SOAK_ASYNC_MUTEX: ProfiledAsyncMutex<u64> = ProfiledAsyncMutex::new(0));
    named!(static SOAK_ASYNC_RWLOCK: ProfiledAsyncRwLock<u64> = ProfiledAsyncRwLock::new(0));
    named!(static SOAK_SEMAPHORE: ProfiledSemaphore = ProfiledSemaphore::new(3));

    /// Exact counts kept by the tasks, per lock and mode.
    #[derive(Default, Debug, Clone, Copy)]
    pub(super) struct AsyncCounts {
        mutex: u64,
        read: u64,
        write: u64,
        permits: u64,
    }

    impl std::ops::AddAssign for AsyncCounts {
        fn add_assign(&mut self, o: AsyncCounts) {
            self.mutex += o.mutex;
            self.read += o.read;
            self.write += o.write;
            self.permits += o.permits;
        }
    }

    pub(super) struct AsyncLoad {
        runtime: tokio::runtime::Runtime,
        stop: Arc<AtomicBool>,
        progress: Arc<AtomicU64>,
        tasks: Mutex<Vec<tokio::task::JoinHandle<AsyncCounts>>>,
    }

    impl AsyncLoad {
        /// Starts `n` tasks on a runtime of two worker threads.
        pub(super) fn start(n: usize) -> Self {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let progress = Arc::new(AtomicU64::new(0));
            let tasks = (0..n)
                .map(|i| {
                    let (stop, progress) = (Arc::clone(&stop), Arc::clone(&progress));
                    let seed = 0xD1B5_4A32_D192_ED03u64.wrapping_mul(i as u64 + 1);
                    runtime.spawn(task(seed, stop, progress))
                })
                .collect();
            AsyncLoad {
                runtime,
                stop,
                progress,
                tasks: Mutex::new(tasks),
            }
        }

        pub(super) fn progress(&self) -> &AtomicU64 {
            &self.progress
        }

        /// Stops the tasks and sums their counts.
        pub(super) fn finish(&self) -> AsyncCounts {
            self.stop.store(true, Relaxed);
            let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
            self.runtime.block_on(async {
                let mut counts = AsyncCounts::default();
                for t in tasks {
                    counts += t.await.unwrap();
                }
                counts
            })
        }
    }

    async fn task(seed: u64, stop: Arc<AtomicBool>, progress: Arc<AtomicU64>) -> AsyncCounts {
        let mut c = AsyncCounts::default();
        let mut x = seed | 1;
        while !stop.load(Relaxed) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 10 {
                0 | 1 => {
                    let mut g = SOAK_ASYNC_MUTEX.lock().await;
                    *g += 1;
                    c.mutex += 1;
                    // Held across an await: other tasks queue behind it.
                    yield_now().await;
                }
                2 => {
                    // A failed attempt records nothing.
                    if let Ok(mut g) = SOAK_ASYNC_MUTEX.try_lock() {
                        *g += 1;
                        c.mutex += 1;
                    }
                }
                3 | 4 => {
                    let g = SOAK_ASYNC_RWLOCK.read().await;
                    c.read += 1;
                    if x & 0x100 == 0 {
                        yield_now().await;
                    }
                    drop(g);
                }
                5 => {
                    *SOAK_ASYNC_RWLOCK.write().await += 1;
                    c.write += 1;
                }
                6 => {
                    if let Ok(mut g) = SOAK_ASYNC_RWLOCK.try_write() {
                        *g += 1;
                        c.write += 1;
                    }
                }
                7 | 8 => {
                    let _permit = SOAK_SEMAPHORE.acquire().await.unwrap();
                    c.permits += 1;
                    yield_now().await;
                }
                _ => {
                    // Two permits at once: one acquisition.
                    let _permits = SOAK_SEMAPHORE.acquire_many(2).await.unwrap();
                    c.permits += 1;
                }
            }
            progress.fetch_add(1, Relaxed);
            // Every task gets its turn, and sees `stop` soon.
            yield_now().await;
        }
        c
    }

    pub(super) fn check(report: &mut Report, profile: &LockProfile, c: &AsyncCounts) {
        let (m_acq, _, m_rel, _) = totals(profile, &SOAK_ASYNC_MUTEX.site().label());
        report.exact("async mutex acquisitions exact", m_acq, c.mutex);
        report.exact("async mutex releases exact", m_rel, c.mutex);
        let rw = SOAK_ASYNC_RWLOCK.site().label();
        let (w_acq, _, w_rel, _) = totals_for_mode(profile, &rw, "write");
        report.exact("async rwlock write acquisitions exact", w_acq, c.write);
        report.exact("async rwlock write releases exact", w_rel, c.write);
        let (r_acq, _, r_rel, _) = totals_for_mode(profile, &rw, "read");
        report.exact("async rwlock read acquisitions exact", r_acq, c.read);
        report.exact("async rwlock read releases exact", r_rel, c.read);
        let (p_acq, _, p_rel, _) = totals(profile, &SOAK_SEMAPHORE.site().label());
        report.exact("semaphore acquisitions exact", p_acq, c.permits);
        report.exact("semaphore releases exact", p_rel, c.permits);
    }
}
