//! Exporter faults under load: threads keep taking profiled locks at 100%
//! capture while profiles are flushed every second into an agent that is
//! down, an agent that flaps, a full disk, an unwritable directory, and a
//! directory deleted again and again. For each: the workload keeps going and
//! finishes, the profiler keeps recording and counts every failure, each
//! failure is logged, and once the fault clears later profiles arrive.

mod common;
#[cfg(feature = "datadog")]
mod upload_common;

#[cfg(feature = "datadog")]
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::faults::{DiskFullUntilCleared, UnwritableDir};
use common::{profiles_in, serial, totals};
use lockprof::read::LockProfile;
use lockprof::{named, ProfiledMutex, ProfiledRwLock, Profiler, ProfilerBuilder, ProfilerHandle};
#[cfg(feature = "datadog")]
use upload_common::{closed_port, parse_multipart, Reply, ScriptedAgent};

named!(static LOAD_MUTEX: ProfiledMutex<u64> = ProfiledMutex::new(0));
named!(static LOAD_RWLOCK: ProfiledRwLock<u64> = ProfiledRwLock::new(0));

const THREADS: usize = 8;
const FLUSH: Duration = Duration::from_secs(1);
/// The longest any one phase may take before the test fails.
const PHASE_LIMIT: Duration = Duration::from_secs(8);

/// Threads taking the two locks until told to stop, each counting its own
/// operations.
struct Load {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    threads: Vec<JoinHandle<u64>>,
}

impl Load {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let threads = (0..THREADS)
            .map(|i| {
                let (stop, ops) = (Arc::clone(&stop), Arc::clone(&ops));
                std::thread::spawn(move || {
                    let mut mutex_ops = 0;
                    while !stop.load(Relaxed) {
                        // Bursts with a short pause: heavy, yet the machine
                        // stays usable.
                        for j in 0..200 {
                            if (i + j) % 4 == 0 {
                                *LOAD_RWLOCK.write().unwrap() += 1;
                            } else if (i + j) % 4 == 1 {
                                let _ = *LOAD_RWLOCK.read().unwrap();
                            } else {
                                *LOAD_MUTEX.lock().unwrap() += 1;
                                mutex_ops += 1;
                            }
                        }
                        ops.fetch_add(200, Relaxed);
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    mutex_ops
                })
            })
            .collect();
        Load { stop, ops, threads }
    }

    fn ops(&self) -> u64 {
        self.ops.load(Relaxed)
    }

    /// Stops the threads; fails the test if they do not all finish soon.
    /// Returns the mutex acquisitions they made.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Relaxed);
        let threads = std::mem::take(&mut self.threads);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
            let _ = tx.send(total);
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the workload finishes, without a hang or a panic, within 10 s of being stopped")
    }
}

impl Drop for Load {
    /// A failed test stops its threads, so that they do not run into the
    /// next test's counts.
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// Waits until `done` holds while the load runs, checking that the load
/// keeps making progress meanwhile.
fn wait_for(load: &Load, what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    let ops0 = load.ops();
    while !done() {
        assert!(
            t0.elapsed() < PHASE_LIMIT,
            "{what}: not seen after {PHASE_LIMIT:?}; logged:\n{}",
            common::logs::all()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Loaded while it happened: the locks were not held up by the fault.
    while load.ops() == ops0 {
        assert!(
            t0.elapsed() < PHASE_LIMIT,
            "{what}: the workload made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn start(builder: ProfilerBuilder) -> ProfilerHandle {
    builder
        .capture_pct(100.0)
        .flush_interval(FLUSH)
        .start()
        .expect("start profiler")
}

/// Stops the profiler; fails the test if that takes longer than `limit`.
fn stop_within(handle: ProfilerHandle, limit: Duration) -> lockprof::ProfilerStats {
    let t0 = Instant::now();
    let stats = handle.stop();
    assert!(t0.elapsed() < limit, "stop took {:?}", t0.elapsed());
    stats
}

/// The workload's mutex count agrees with the lock's value (nothing the
/// profiler did broke the locking itself).
fn finish_and_check(load: Load, before: u64) {
    let mutex_ops = load.finish();
    assert_eq!(mutex_value() - before, mutex_ops);
}

fn mutex_value() -> u64 {
    *LOAD_MUTEX.lock().unwrap_or_else(|e| e.into_inner())
}

fn logged(level: log::Level) -> Vec<String> {
    common::logs::at(level)
}

/// Profiles in `dir` that hold samples of the workload's mutex.
fn profiles_with_load(dir: &std::path::Path) -> usize {
    let name = LOAD_MUTEX.site().label();
    if !dir.is_dir() {
        return 0;
    }
    profiles_in(dir)
        .iter()
        .filter_map(|f| LockProfile::from_file(f).ok())
        .filter(|p| totals(p, &name).0 > 0)
        .count()
}

#[test]
#[cfg(feature = "datadog")]
fn an_agent_down_for_the_whole_run() {
    let _turn = serial();
    common::logs::start();
    let before = mutex_value();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let timeout = Duration::from_secs(1);
    let handle = start(Profiler::builder().agent_url(&url).api_timeout(timeout));
    let load = Load::start();
    wait_for(&load, "two profiles given up on", || {
        handle.stats().upload.unwrap().failed >= 2
    });
    let recorded = handle.stats().events_recorded;
    wait_for(&load, "events recorded after the failures", || {
        handle.stats().events_recorded > recorded
    });
    finish_and_check(load, before);
    let stats = stop_within(handle, timeout + Duration::from_secs(3));

    let upload = stats.upload.unwrap();
    assert_eq!(upload.sent, 0, "{upload:?}");
    assert!(upload.failed >= 2 && upload.retries >= 2, "{upload:?}");
    assert!(stats.events_recorded > recorded, "{stats:?}");
    let errors = logged(log::Level::Error);
    assert!(
        errors.iter().filter(|e| e.contains("not sent after")).count() as u64 >= 2,
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("cannot connect")), "{errors:?}");
}

#[test]
#[cfg(feature = "datadog")]
fn a_flapping_agent() {
    let _turn = serial();
    common::logs::start();
    let before = mutex_value();
    // Up, answering in turn 202, 500, and a connection closed unanswered.
    let agent = ScriptedAgent::start(|n| match n % 3 {
        0 => Reply::Status(202),
        1 => Reply::Status(500),
        _ => Reply::Close,
    });
    let addr: SocketAddr = agent.addr;
    let handle = start(
        Profiler::builder()
            .agent_url(agent.url())
            .api_timeout(Duration::from_secs(1)),
    );
    let load = Load::start();
    wait_for(&load, "every kind of answer given", || {
        agent.requests().len() >= 4
    });
    assert!(handle.stats().upload.unwrap().sent >= 1);

    // Down: connections refused.
    drop(agent);
    let failed = handle.stats().upload.unwrap().failed;
    wait_for(&load, "a profile given up on while the agent is down", || {
        handle.stats().upload.unwrap().failed > failed
    });

    // Up again, on the same address, accepting everything.
    let agent = ScriptedAgent::start_at(addr, |_| Reply::Status(202));
    let sent = handle.stats().upload.unwrap().sent;
    wait_for(&load, "a profile sent once the agent is back", || {
        handle.stats().upload.unwrap().sent > sent
    });
    finish_and_check(load, before);
    let stats = stop_within(handle, Duration::from_secs(4));

    let upload = stats.upload.unwrap();
    assert!(upload.retries >= 1 && upload.failed >= 1, "{upload:?}");
    // The profiles that arrived after the agent came back carry the load.
    let name = LOAD_MUTEX.site().label();
    let arrived: Vec<LockProfile> = agent
        .requests()
        .iter()
        .map(|r| {
            let parts = parse_multipart(&r.header("content-type").unwrap(), &r.body);
            LockProfile::from_bytes(&parts[1].body).unwrap()
        })
        .collect();
    assert!(
        arrived.len() >= 2,
        "{} profiles after the agent came back",
        arrived.len()
    );
    assert!(
        arrived.iter().any(|p| totals(p, &name).0 > 0),
        "no load in later profiles"
    );
    let errors = logged(log::Level::Error);
    assert!(errors.iter().any(|e| e.contains("not sent after")), "{errors:?}");
    let warnings = logged(log::Level::Warn);
    assert!(warnings.iter().any(|w| w.contains("retrying")), "{warnings:?}");
}

#[test]
fn a_full_disk_until_it_is_freed() {
    let _turn = serial();
    common::logs::start();
    let before = mutex_value();
    let dir = tempfile::tempdir().unwrap();
    let (disk, full) = DiskFullUntilCleared::new(dir.path().join("profile"));
    let handle = start(Profiler::builder().export(disk));
    let load = Load::start();
    wait_for(&load, "two profiles failed on the full disk", || {
        handle.stats().profiles_failed >= 2
    });
    let mid = handle.stats();
    assert!(mid.events_recorded > 0, "{mid:?}");
    assert!(
        mid.last_error.as_deref().unwrap().contains("/dev/full"),
        "{mid:?}"
    );

    full.store(false, Relaxed);
    wait_for(&load, "a profile written once the disk is freed", || {
        profiles_with_load(dir.path()) >= 1
    });
    finish_and_check(load, before);
    let stats = stop_within(handle, Duration::from_secs(4));

    assert!(stats.profiles_exported >= 2, "{stats:?}");
    assert!(stats.events_recorded > mid.events_recorded, "{stats:?}");
    let errors = logged(log::Level::Error);
    assert_eq!(
        errors.len() as u64,
        stats.profiles_failed,
        "each failure logged: {errors:?}"
    );
    assert!(
        errors.iter().all(|e| e.contains("No space left on device")),
        "{errors:?}"
    );
}

#[test]
fn an_unwritable_directory_until_it_is_writable() {
    let _turn = serial();
    common::logs::start();
    let before = mutex_value();
    let root = tempfile::tempdir().unwrap();
    let out = UnwritableDir::new(root.path());
    let handle = start(Profiler::builder().output_pprof(out.prefix()));
    let load = Load::start();
    wait_for(&load, "two profiles failed on the unwritable directory", || {
        handle.stats().profiles_failed >= 2
    });
    let mid = handle.stats();
    assert_eq!(mid.profiles_exported, 0, "{} ({mid:?})", out.how());
    assert!(mid.events_recorded > 0, "{mid:?}");

    out.clear();
    wait_for(&load, "a profile written once the directory is writable", || {
        profiles_with_load(out.dir()) >= 1
    });
    finish_and_check(load, before);
    let stats = stop_within(handle, Duration::from_secs(4));

    assert!(stats.profiles_exported >= 2, "{stats:?}");
    let errors = logged(log::Level::Error);
    assert_eq!(
        errors.len() as u64,
        stats.profiles_failed,
        "each failure logged: {errors:?}"
    );
    let shown = out.dir().display().to_string();
    assert!(errors.iter().all(|e| e.contains(&shown)), "{errors:?}");
}

#[test]
fn a_directory_deleted_again_and_again() {
    let _turn = serial();
    common::logs::start();
    let before = mutex_value();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("deleted");
    let handle = start(Profiler::builder().output_pprof(out.join("profile")));
    let load = Load::start();
    wait_for(&load, "a first profile", || handle.stats().profiles_exported >= 1);

    // Deleted within 100 ms of each time the exporter creates it, for three
    // flushes, whatever the exporter is doing at the time.
    let exported = handle.stats().profiles_exported;
    let mut deletions = 0;
    let t0 = Instant::now();
    while handle.stats().profiles_exported + handle.stats().profiles_failed < exported + 3 {
        assert!(
            t0.elapsed() < PHASE_LIMIT,
            "three flushes not done while deleting"
        );
        if std::fs::remove_dir_all(&out).is_ok() {
            deletions += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(deletions >= 2, "{deletions} deletions");
    let mid = handle.stats();

    // Left alone, the directory is created again and later profiles arrive.
    wait_for(&load, "a profile written once the deletions stop", || {
        handle.stats().profiles_exported > mid.profiles_exported && profiles_with_load(&out) >= 1
    });
    finish_and_check(load, before);
    let stats = stop_within(handle, Duration::from_secs(4));

    assert!(stats.events_recorded > mid.events_recorded, "{stats:?}");
    // A deletion in the middle of a write fails that profile: logged and
    // counted, never silent.
    let errors = logged(log::Level::Error);
    assert_eq!(
        errors.len() as u64,
        stats.profiles_failed,
        "each failure logged: {errors:?}"
    );
    assert!(
        stats.profiles_exported + stats.profiles_failed >= exported + 4,
        "{stats:?}"
    );
}
