//! The lock-profiler stress scenarios: one scenario per run, with its
//! parameters as flags, the report lines on stdout and, with `--output`, the
//! same figures as JSON.
//!
//! ```text
//! cargo run --release -p lockprof-stress --bin lock_profiler_stress -- \
//!     --scenario-type high_contention --num-threads 50 --num-locks 2 \
//!     --operations-per-thread 1000 --hold-time-ms 5 --think-time-ms 1
//! ```
//!
//! The profiler runs when `DD_PROFILING_ENABLED=1 DD_PROFILING_LOCK_ENABLED=1`
//! are set (through `lockprof::try_start_from_env`, so every `DD_PROFILING_*`
//! variable applies) and not otherwise: the same scenario, run both ways,
//! measures the profiler's overhead. Acquire times are measured by the
//! scenario itself, around each acquisition, independently of the profiler.
//!
//! Every lock is a lockprof lock with a variable name; the semaphores, events
//! and the bounded queue are built from `ProfiledMutex` and `ProfiledCondvar`
//! (`stress/src/primitives.rs`), so their internal locking shows up too.
//! All threads of a run wait on one start gate and are joined at the end.
//!
//! `async_stress` uses `ProfiledAsyncMutex` and needs the `tokio` feature:
//! `cargo run --release --features tokio -p lockprof-stress --bin lock_profiler_stress -- --scenario-type async_stress`.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::TryLockError;
use std::thread::{self, Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use clap::{ArgAction, CommandFactory, Parser, ValueEnum};
use fastrand::Rng;
use lockprof::{
    named, ProfiledCondvar, ProfiledMutex, ProfiledMutexGuard, ProfiledReentrantMutex, ProfiledRwLock,
};
use serde_json::{json, Value};

use lockprof_stress::primitives::{BoundedQueue, Event, Semaphore};
use lockprof_stress::stats::{ScenarioResult, ThreadStats};

/// Runs one lock-profiler stress scenario and prints its figures.
///
/// Flags that a scenario does not use are ignored. Profiling is on when
/// DD_PROFILING_ENABLED=1 and DD_PROFILING_LOCK_ENABLED=1 are set.
#[derive(Parser, Debug)]
#[command(name = "lock_profiler_stress")]
struct Args {
    /// The scenario to run.
    #[arg(long, value_enum)]
    scenario_type: ScenarioType,

    /// Worker threads (all scenarios but producer_consumer, reader_writer,
    /// async_stress).
    #[arg(long, default_value_t = 10)]
    num_threads: usize,
    /// Operations per worker thread (and per reader and writer).
    #[arg(long, default_value_t = 1000)]
    operations_per_thread: u64,
    /// Locks to choose from [default: 2 for high_contention, 5 for
    /// long_held_locks and deadlock_prone, 10 otherwise].
    #[arg(long)]
    num_locks: Option<usize>,
    /// Milliseconds each lock is held [default: 5 for high_contention, 2 for
    /// lock_hierarchy, 0 for high_frequency, 100 for long_held_locks, 10 for
    /// memory_pressure].
    #[arg(long)]
    hold_time_ms: Option<u64>,
    /// Milliseconds between operations [default: 1 for high_contention, 0 for
    /// high_frequency].
    #[arg(long)]
    think_time_ms: Option<u64>,

    /// lock_hierarchy: locks taken in order, outermost first.
    #[arg(long, default_value_t = 3)]
    hierarchy_depth: usize,

    /// mixed_primitives: include re-entrant mutexes.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    use_rlock: bool,
    /// mixed_primitives: include a mutex with a condition variable.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    use_condition: bool,
    /// mixed_primitives: include counting semaphores (2 permits).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    use_semaphore: bool,
    /// mixed_primitives: wait on, clear and set events 10% of the time.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    use_event: bool,

    /// long_held_locks: hold time varies by up to ± this many milliseconds.
    #[arg(long, default_value_t = 50)]
    variance_ms: u64,

    /// producer_consumer: producer threads.
    #[arg(long, default_value_t = 10)]
    num_producers: usize,
    /// producer_consumer: consumer threads.
    #[arg(long, default_value_t = 10)]
    num_consumers: usize,
    /// producer_consumer: capacity of the bounded queue.
    #[arg(long, default_value_t = 100)]
    queue_size: usize,
    /// producer_consumer: items each producer puts.
    #[arg(long, default_value_t = 1000)]
    items_per_producer: u64,
    /// producer_consumer: milliseconds a consumer spends on each item.
    #[arg(long, default_value_t = 1)]
    processing_time_ms: u64,

    /// reader_writer: reader threads.
    #[arg(long, default_value_t = 30)]
    num_readers: usize,
    /// reader_writer: writer threads.
    #[arg(long, default_value_t = 5)]
    num_writers: usize,
    /// reader_writer: milliseconds a read guard is held.
    #[arg(long, default_value_t = 10)]
    read_time_ms: u64,
    /// reader_writer: milliseconds a write guard is held.
    #[arg(long, default_value_t = 50)]
    write_time_ms: u64,

    /// memory_pressure: MiB allocated (and filled) while holding the lock.
    #[arg(long, default_value_t = 1.0)]
    allocate_mb_per_op: f64,

    /// deadlock_prone: take each subset of locks in random order (else in a
    /// fixed global order).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    randomize_order: bool,
    /// deadlock_prone: milliseconds to wait for each lock; a timeout is an
    /// error and releases what was taken.
    #[arg(long, default_value_t = 100)]
    timeout_ms: u64,

    /// async_stress: tasks.
    #[arg(long, default_value_t = 100)]
    num_tasks: usize,
    /// async_stress: operations per task.
    #[arg(long, default_value_t = 500)]
    operations_per_task: u64,
    /// async_stress: milliseconds each task sleeps while holding its lock.
    #[arg(long, default_value_t = 1)]
    async_sleep_ms: u64,

    /// Seed for the random choices (default: a fresh seed each run).
    #[arg(long)]
    seed: Option<u64>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum ScenarioType {
    HighContention,
    LockHierarchy,
    HighFrequency,
    MixedPrimitives,
    LongHeldLocks,
    ProducerConsumer,
    ReaderWriter,
    MemoryPressure,
    DeadlockProne,
    AsyncStress,
}

impl ScenarioType {
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

impl Args {
    /// Values clap cannot check by type alone.
    fn check(&self) -> Result<(), String> {
        let positive = [
            ("--num-locks", self.num_locks.unwrap_or(1)),
            ("--hierarchy-depth", self.hierarchy_depth),
            ("--queue-size", self.queue_size),
        ];
        for (flag, value) in positive {
            if value == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        if !(self.allocate_mb_per_op.is_finite() && self.allocate_mb_per_op >= 0.0) {
            return Err("--allocate-mb-per-op must be a non-negative number".to_owned());
        }
        Ok(())
    }
}

/// What a scenario hands back besides the elapsed time.
struct Outcome {
    stats: ThreadStats,
    lock_names: Vec<String>,
    parameters: BTreeMap<String, Value>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(message) = args.check() {
        Args::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit();
    }
    if args.scenario_type == ScenarioType::AsyncStress && !cfg!(feature = "tokio") {
        eprintln!(
            "async_stress needs lockprof's async locks: \
             cargo run --release --features tokio -p lockprof-stress --bin lock_profiler_stress -- …"
        );
        return ExitCode::from(2);
    }
    let profiler = match lockprof::try_start_from_env() {
        Ok(profiler) => Some(profiler),
        Err(lockprof::NotStarted::Disabled) => None,
        Err(why) => {
            eprintln!("lockprof: {why}; running without it");
            None
        }
    };

    let seeds = Seeds::new(args.seed);
    let started = Instant::now();
    let outcome = run(&args, &seeds);
    let duration = started.elapsed();

    let mut result = ScenarioResult::new(&args.scenario_type.name(), duration, &outcome.stats);
    result.lock_names = outcome.lock_names;
    result.parameters = outcome.parameters;
    if let Some(profiler) = &profiler {
        result.profiling = true;
        result.profile_output = Some(profiler.output().to_owned());
    }
    println!("{result}");
    if let Some(profiler) = profiler {
        let output = profiler.output().to_owned();
        let stats = profiler.stop();
        eprintln!(
            "lockprof: {} profile(s) to {output}; {} events recorded, {} dropped{}",
            stats.profiles_exported,
            stats.events_recorded,
            stats.events_dropped,
            stats
                .last_error
                .as_ref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
        // The profiler's view of the same run, beside the scenario's own
        // figures: every run checks the profile's accuracy.
        let totals = lockprof_stress::summary::totals(&stats.files);
        // The scenario's own figures leave out the start gate.
        let (acquired, wait_ns) = totals
            .iter()
            .filter(|(name, _)| !name.ends_with(":start_gate"))
            .fold((0i64, 0i64), |(a, w), (_, t)| (a + t.acquired, w + t.wait_ns));
        if acquired > 0 {
            eprintln!(
                "Profile: avg acquire wait {:.3}ms over {acquired} acquisitions (scenario: Avg acquire time above)",
                wait_ns as f64 / acquired as f64 / 1e6
            );
        }
        lockprof_stress::summary::print(&stats.files, 3, false);
    }
    if let Some(path) = &args.output {
        let written = serde_json::to_string_pretty(&result)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json + "\n").map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn run(args: &Args, seeds: &Seeds) -> Outcome {
    match args.scenario_type {
        ScenarioType::HighContention => high_contention(args, seeds),
        ScenarioType::LockHierarchy => lock_hierarchy(args, seeds),
        ScenarioType::HighFrequency => high_frequency(args, seeds),
        ScenarioType::MixedPrimitives => mixed_primitives(args, seeds),
        ScenarioType::LongHeldLocks => long_held_locks(args, seeds),
        ScenarioType::ProducerConsumer => producer_consumer(args, seeds),
        ScenarioType::ReaderWriter => reader_writer(args, seeds),
        ScenarioType::MemoryPressure => memory_pressure(args, seeds),
        ScenarioType::DeadlockProne => deadlock_prone(args, seeds),
        ScenarioType::AsyncStress => async_stress(args, seeds),
    }
}

/// Each op picks a random lock, acquires it within 1 s, holds it, releases
/// it and thinks.
fn high_contention(args: &Args, seeds: &Seeds) -> Outcome {
    let num_locks = args.num_locks.unwrap_or(2);
    let hold_ms = args.hold_time_ms.unwrap_or(5);
    let think_ms = args.think_time_ms.unwrap_or(1);
    let locks: Vec<ProfiledMutex<u64>> = (0..num_locks)
        .map(|i| named!(contended_lock[i] = ProfiledMutex::new(0)))
        .collect();
    let worker = |_: usize, rng: &mut Rng| {
        let mut stats = ThreadStats::default();
        for _ in 0..args.operations_per_thread {
            let lock = &locks[rng.usize(..locks.len())];
            let start = Instant::now();
            let Some(mut guard) = lock_within(lock, Duration::from_secs(1)) else {
                stats.error();
                continue;
            };
            stats.acquired(start.elapsed());
            *guard += 1;
            pause(hold_ms);
            drop(guard);
            pause(think_ms);
        }
        stats
    };
    Outcome {
        stats: run_together(seeds, &[("worker", args.num_threads, &worker)]),
        lock_names: vec![locks[0].site().label()],
        parameters: params(json!({
            "num_threads": args.num_threads,
            "num_locks": num_locks,
            "operations_per_thread": args.operations_per_thread,
            "hold_time_ms": hold_ms,
            "think_time_ms": think_ms,
        })),
    }
}

/// Each op takes `locks[0..depth)` in order (0.5 s each), holds them all,
/// and releases them in reverse order.
fn lock_hierarchy(args: &Args, seeds: &Seeds) -> Outcome {
    let depth = args.hierarchy_depth;
    let hold_ms = args.hold_time_ms.unwrap_or(2);
    let levels: Vec<ProfiledMutex<u64>> = (0..depth)
        .map(|i| named!(hierarchy_lock[i] = ProfiledMutex::new(0)))
        .collect();
    let worker = |_: usize, _: &mut Rng| {
        let mut stats = ThreadStats::default();
        let mut held = Vec::with_capacity(levels.len());
        for _ in 0..args.operations_per_thread {
            let start = Instant::now();
            for level in &levels {
                match lock_within(level, Duration::from_millis(500)) {
                    Some(guard) => held.push(guard),
                    None => {
                        stats.error();
                        break;
                    }
                }
            }
            if held.len() == levels.len() {
                stats.acquired(start.elapsed());
                for guard in &mut held {
                    **guard += 1;
                }
                pause(hold_ms);
            }
            while let Some(guard) = held.pop() {
                drop(guard);
            }
        }
        stats
    };
    Outcome {
        stats: run_together(seeds, &[("worker", args.num_threads, &worker)]),
        lock_names: vec![levels[0].site().label()],
        parameters: params(json!({
            "num_threads": args.num_threads,
            "hierarchy_depth": depth,
            "operations_per_thread": args.operations_per_thread,
            "hold_time_ms": hold_ms,
        })),
    }
}

/// Tight acquire/release cycles (0.1 s timeout) over `num_locks` locks.
fn high_frequency(args: &Args, seeds: &Seeds) -> Outcome {
    let num_locks = args.num_locks.unwrap_or(10);
    let hold_ms = args.hold_time_ms.unwrap_or(0);
    let think_ms = args.think_time_ms.unwrap_or(0);
    let locks: Vec<ProfiledMutex<u64>> = (0..num_locks)
        .map(|i| named!(hot_lock[i] = ProfiledMutex::new(0)))
        .collect();
    let worker = |_: usize, rng: &mut Rng| {
        let mut stats = ThreadStats::default();
        for _ in 0..args.operations_per_thread {
            let lock = &locks[rng.usize(..locks.len())];
            let start = Instant::now();
            let Some(mut guard) = lock_within(lock, Duration::from_millis(100)) else {
                stats.error();
                continue;
            };
            stats.acquired(start.elapsed());
            *guard += 1;
            pause(hold_ms);
            drop(guard);
            pause(think_ms);
        }
        stats
    };
    Outcome {
        stats: run_together(seeds, &[("worker", args.num_threads, &worker)]),
        lock_names: vec![locks[0].site().label()],
        parameters: params(json!({
            "num_threads": args.num_threads,
            "num_locks": num_locks,
            "operations_per_thread": args.operations_per_thread,
            "hold_time_ms": hold_ms,
            "think_time_ms": think_ms,
        })),
    }
}

/// One of a mixed pool of primitives.
enum Primitive<'a> {
    Mutex(&'a ProfiledMutex<u64>),
    Reentrant(&'a ProfiledReentrantMutex<Cell<u64>>),
    Semaphore(&'a Semaphore),
    Condition(&'a ProfiledMutex<u64>, &'a ProfiledCondvar),
}

/// Each op acquires a random primitive of the pool (0.5 s timeout) and
/// works briefly; 10% of ops also wait on, clear and set an event.
fn mixed_primitives(args: &Args, seeds: &Seeds) -> Outcome {
    let timeout = Duration::from_millis(500);
    let mutexes: Vec<ProfiledMutex<u64>> = (0..5)
        .map(|i| named!(mixed_lock[i] = ProfiledMutex::new(0)))
        .collect();
    let reentrant: Vec<ProfiledReentrantMutex<Cell<u64>>> = (0..if args.use_rlock { 3 } else { 0 })
        .map(|i| named!(mixed_rlock[i] = ProfiledReentrantMutex::new(Cell::new(0))))
        .collect();
    let semaphores: Vec<Semaphore> = (0..if args.use_semaphore { 3 } else { 0 })
        .map(|i| named!(mixed_semaphore[i] = Semaphore::new(2)))
        .collect();
    named!(let condition_lock = ProfiledMutex::new(0));
    let condition = ProfiledCondvar::new();
    let events: Vec<Event> = (0..if args.use_event { 3 } else { 0 })
        .map(|i| named!(mixed_event[i] = Event::new(true)))
        .collect();

    let mut pool: Vec<Primitive<'_>> = mutexes.iter().map(Primitive::Mutex).collect();
    pool.extend(reentrant.iter().map(Primitive::Reentrant));
    pool.extend(semaphores.iter().map(Primitive::Semaphore));
    if args.use_condition {
        pool.push(Primitive::Condition(&condition_lock, &condition));
    }

    let worker = |_: usize, rng: &mut Rng| {
        let mut stats = ThreadStats::default();
        for _ in 0..args.operations_per_thread {
            let start = Instant::now();
            match pool[rng.usize(..pool.len())] {
                Primitive::Mutex(lock) => match lock_within(lock, timeout) {
                    Some(mut guard) => {
                        stats.acquired(start.elapsed());
                        *guard += 1;
                        pause(1);
                    }
                    None => stats.error(),
                },
                Primitive::Reentrant(lock) => match lock.try_lock_for(timeout) {
                    Some(guard) => {
                        stats.acquired(start.elapsed());
                        guard.set(guard.get() + 1);
                        pause(1);
                    }
                    None => stats.error(),
                },
                Primitive::Semaphore(semaphore) => match semaphore.acquire_timeout(timeout) {
                    Some(_permit) => {
                        stats.acquired(start.elapsed());
                        pause(1);
                    }
                    None => stats.error(),
                },
                Primitive::Condition(lock, condvar) => match lock_within(lock, timeout) {
                    Some(mut guard) => {
                        stats.acquired(start.elapsed());
                        *guard += 1;
                        if rng.f64() < 0.1 {
                            condvar.notify_all();
                        }
                    }
                    None => stats.error(),
                },
            }
            if !events.is_empty() && rng.f64() < 0.1 {
                let event = &events[rng.usize(..events.len())];
                if event.wait_timeout(Duration::from_millis(10)) {
                    event.clear();
                    pause(1);
                    event.set();
                }
            }
        }
        stats
    };

    let mut lock_names = vec![mutexes[0].site().label()];
    lock_names.extend(reentrant.first().map(|l| l.site().label()));
    lock_names.extend(semaphores.first().map(|s| s.site().label()));
    if args.use_condition {
        lock_names.push(condition_lock.site().label());
    }
    lock_names.extend(events.first().map(|e| e.site().label()));
    Outcome {
        stats: run_together(seeds, &[("worker", args.num_threads, &worker)]),
        lock_names,
        parameters: params(json!({
            "num_threads": args.num_threads,
            "operations_per_thread": args.operations_per_thread,
            "use_rlock": args.use_rlock,
            "use_condition": args.use_condition,
            "use_semaphore": args.use_semaphore,
            "use_event": args.use_event,
        })),
    }
}

/// Each op holds a random lock for `hold_time_ms ± variance_ms` (at least
/// 1 ms), waiting at most 2 s for it.
fn long_held_locks(args: &Args, seeds: &Seeds) -> Outcome {
    let num_locks = args.num_locks.unwrap_or(5);
    let hold_ms = args.hold_time_ms.unwrap_or(100);
    let variance = i64::try_from(args.variance_ms).unwrap_or(i64::MAX);
    let locks: Vec<ProfiledMutex<u64>> = (0..num_locks)
        .map(|i| named!(slow_lock[i] = ProfiledMutex::new(0)))
        .collect();
    let worker = |_: usize, rng: &mut Rng| {
        let mut stats = ThreadStats::default();
        for _ in 0..args.operations_per_thread {
            let lock = &locks[rng.usize(..locks.len())];
            let start = Instant::now();
            let Some(mut guard) = lock_within(lock, Duration::from_secs(2)) else {
                stats.error();
                continue;
            };
            stats.acquired(start.elapsed());
            *guard += 1;
            let jitter = rng.i64(-variance..=variance);
            let hold = i64::try_from(hold_ms).unwrap_or(i64::MAX).saturating_add(jitter);
            pause(u64::try_from(hold.max(1)).unwrap_or(1));
        }
        stats
    };
    Outcome {
        stats: run_together(seeds, &[("worker", args.num_threads, &worker)]),
        lock_names: vec![locks[0].site().label()],
        parameters: params(json!({
            "num_threads": args.num_threads,
            "num_locks": num_locks,
            "operations_per_thread": args.operations_per_thread,
            "hold_time_ms": hold_ms,
            "variance_ms": args.variance_ms,
        })),
    }
}

/// Producers put into a bounded queue (1 s timeout, the time it takes is
/// their acquire time); consumers get (0.1 s timeout, retried) and process;
/// once the producers are done, one sentinel per consumer stops them.
fn producer_consumer(args: &Args, seeds: &Seeds) -> Outcome {
    named!(let work_queue = BoundedQueue::<Option<String>>::new(args.queue_size));
    let producer = |id: usize, _: &mut Rng| {
        let mut stats = ThreadStats::default();
        for i in 0..args.items_per_producer {
            let item = format!("producer-{id}-item-{i}");
            let start = Instant::now();
            match work_queue.put_timeout(Some(item), Duration::from_secs(1)) {
                Ok(()) => stats.acquired(start.elapsed()),
                Err(_) => stats.error(),
            }
        }
        stats
    };
    let consumer = |_: usize, _: &mut Rng| {
        let mut stats = ThreadStats::default();
        loop {
            match work_queue.get_timeout(Duration::from_millis(100)) {
                None => continue,
                Some(None) => break,
                Some(Some(_item)) => {
                    pause(args.processing_time_ms);
                    stats.operation();
                }
            }
        }
        stats
    };

    named!(let start_gate = Event::new(false));
    let stats = thread::scope(|scope| {
        let producers = spawn_group(
            scope,
            &start_gate,
            seeds,
            "producer",
            args.num_producers,
            &producer,
        );
        let consumers = spawn_group(
            scope,
            &start_gate,
            seeds,
            "consumer",
            args.num_consumers,
            &consumer,
        );
        start_gate.set();
        let mut stats = join_all(producers);
        for _ in 0..args.num_consumers {
            let mut sentinel = None;
            while let Err(back) = work_queue.put_timeout(sentinel, Duration::from_secs(1)) {
                sentinel = back;
            }
        }
        stats.merge(&join_all(consumers));
        stats
    });
    Outcome {
        stats,
        lock_names: vec![work_queue.site().label()],
        parameters: params(json!({
            "num_producers": args.num_producers,
            "num_consumers": args.num_consumers,
            "queue_size": args.queue_size,
            "items_per_producer": args.items_per_producer,
            "processing_time_ms": args.processing_time_ms,
        })),
    }
}

/// Readers hold a read guard `read_time_ms`, writers the write guard
/// `write_time_ms`, each waiting at most 2 s.
fn reader_writer(args: &Args, seeds: &Seeds) -> Outcome {
    named!(let document_lock = ProfiledRwLock::new(0u64));
    let timeout = Duration::from_secs(2);
    let reader = |_: usize, _: &mut Rng| {
        let mut stats = ThreadStats::default();
        for _ in 0..args.operations_per_thread {
            let start = Instant::now();
            let guard = match document_lock.try_read_for(timeout) {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    stats.error();
                    continue;
                }
            };
            stats.acquired(start.elapsed());
            let _version = *guard;
            pause(args.read_time_ms);
        }
        stats
    };
    let writer = |_: usize, _: &mut Rng| {
        let mut stats = ThreadStats::default();
        for _ in 0..args.operations_per_thread {
            let start = Instant::now();
            let mut guard = match document_lock.try_write_for(timeout) {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    stats.error();
                    continue;
                }
            };
            stats.acquired(start.elapsed());
            *guard += 1;
            pause(args.write_time_ms);
        }
        stats
    };
    Outcome {
        stats: run_together(
            seeds,
            &[
                ("reader", args.num_readers, &reader),
                ("writer", args.num_writers, &writer),
            ],
        ),
        lock_names: vec![document_lock.site().label()],
        parameters: params(json!({
            "num_readers": args.num_readers,
            "num_writers": args.num_writers,
            "operations_per_thread": args.operations_per_thread,
            "read_time_ms": args.read_time_ms,
            "write_time_ms": args.write_time_ms,
        })),
    }
}

/// Each op allocates and fills `allocate_mb_per_op` MiB while holding a
/// random lock (1 s timeout), keeps the last 10 allocations, and holds the
/// lock `hold_time_ms`.
fn memory_pressure(args: &Args, seeds: &Seeds) -> Outcome {
    let num_locks = args.num_locks.unwrap_or(10);
    let hold_ms = args.hold_time_ms.unwrap_or(10);
    let floats = (args.allocate_mb_per_op * (1 << 20) as f64 / 8.0) as usize;
    let locks: Vec<ProfiledMutex<u64>> = (0..num_locks)
        .map(|i| named!(allocation_lock[i] = ProfiledMutex::new(0)))
        .collect();
    let worker = |_: usize, rng: &mut Rng| {
        let mut stats = ThreadStats::default();
        let mut kept: VecDeque<Vec<f64>> = VecDeque::with_capacity(11);
        for _ in 0..args.operations_per_thread {
            let lock = &locks[rng.usize(..locks.len())];
            let start = Instant::now();
            let Some(mut guard) = lock_within(lock, Duration::from_secs(1)) else {
                stats.error();
                continue;
            };
            stats.acquired(start.elapsed());
            // Filled, not zeroed: zeroed pages would never be touched.
            kept.push_back((0..floats).map(|_| rng.f64()).collect());
            if kept.len() > 10 {
                kept.pop_front();
            }
            *guard += 1;
            pause(hold_ms);
        }
        stats
    };
    Outcome {
        stats: run_together(seeds, &[("worker", args.num_threads, &worker)]),
        lock_names: vec![locks[0].site().label()],
        parameters: params(json!({
            "num_threads": args.num_threads,
            "num_locks": num_locks,
            "operations_per_thread": args.operations_per_thread,
            "allocate_mb_per_op": args.allocate_mb_per_op,
            "hold_time_ms": hold_ms,
        })),
    }
}

/// Each op takes a random subset of 2..=min(4, n) locks, in random order or
/// in index order, each within `timeout_ms`; a timeout is an error and
/// releases what was taken, so the run never deadlocks.
fn deadlock_prone(args: &Args, seeds: &Seeds) -> Outcome {
    let num_locks = args.num_locks.unwrap_or(5);
    let timeout = Duration::from_millis(args.timeout_ms);
    let locks: Vec<ProfiledMutex<u64>> = (0..num_locks)
        .map(|i| named!(resource_lock[i] = ProfiledMutex::new(0)))
        .collect();
    let worker = |_: usize, rng: &mut Rng| {
        let mut stats = ThreadStats::default();
        let mut indexes: Vec<usize> = (0..locks.len()).collect();
        let mut held = Vec::with_capacity(4);
        for _ in 0..args.operations_per_thread {
            let take = if locks.len() >= 2 {
                rng.usize(2..=locks.len().min(4))
            } else {
                locks.len()
            };
            rng.shuffle(&mut indexes);
            let chosen = &mut indexes[..take];
            if !args.randomize_order {
                chosen.sort_unstable();
            }
            let start = Instant::now();
            for &i in chosen.iter() {
                match lock_within(&locks[i], timeout) {
                    Some(guard) => held.push(guard),
                    None => {
                        stats.error();
                        break;
                    }
                }
            }
            if held.len() == take {
                stats.acquired(start.elapsed());
                for guard in &mut held {
                    **guard += 1;
                }
                pause(1);
            }
            held.clear();
        }
        stats
    };
    Outcome {
        stats: run_together(seeds, &[("worker", args.num_threads, &worker)]),
        lock_names: vec![locks[0].site().label()],
        parameters: params(json!({
            "num_threads": args.num_threads,
            "num_locks": num_locks,
            "operations_per_thread": args.operations_per_thread,
            "randomize_order": args.randomize_order,
            "timeout_ms": args.timeout_ms,
        })),
    }
}

/// `num_tasks` tasks on a multi-threaded tokio runtime, each taking a random
/// one of `num_locks` profiled async mutexes and holding it across an
/// `async_sleep_ms` sleep. Tasks are named `task-<i>` in the profile.
#[cfg(feature = "tokio")]
fn async_stress(args: &Args, seeds: &Seeds) -> Outcome {
    use lockprof::ProfiledAsyncMutex;
    use std::sync::Arc;

    let num_locks = args.num_locks.unwrap_or(10);
    let locks: Arc<Vec<ProfiledAsyncMutex<u64>>> = Arc::new(
        (0..num_locks)
            .map(|i| named!(async_lock[i] = ProfiledAsyncMutex::new(0)))
            .collect(),
    );
    named!(let start_gate = Arc::new(ProfiledAsyncMutex::new(())));
    let ops = args.operations_per_task;
    let sleep = Duration::from_millis(args.async_sleep_ms);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .thread_name("async-worker")
        .build()
        .expect("build a tokio runtime");
    let stats = runtime.block_on(async {
        // Held while the tasks are spawned, so that they all start together.
        let gate = start_gate.lock().await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..args.num_tasks {
            let (locks, start_gate) = (Arc::clone(&locks), Arc::clone(&start_gate));
            let mut rng = seeds.rng();
            tasks.spawn(lockprof::with_task_name(format!("task-{i}"), async move {
                drop(start_gate.lock().await);
                let mut stats = ThreadStats::default();
                for _ in 0..ops {
                    let lock = &locks[rng.usize(..locks.len())];
                    let start = Instant::now();
                    let mut guard = lock.lock().await;
                    stats.acquired(start.elapsed());
                    *guard += 1;
                    if sleep.is_zero() {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(sleep).await;
                    }
                }
                stats
            }));
        }
        drop(gate);
        let mut total = ThreadStats::default();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(stats) => total.merge(&stats),
                Err(e) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(e) => panic!("a task failed: {e}"),
                },
            }
        }
        total
    });
    Outcome {
        stats,
        lock_names: vec![locks[0].site().label()],
        parameters: params(json!({
            "num_tasks": args.num_tasks,
            "num_locks": num_locks,
            "operations_per_task": args.operations_per_task,
            "async_sleep_ms": args.async_sleep_ms,
        })),
    }
}

#[cfg(not(feature = "tokio"))]
fn async_stress(_: &Args, _: &Seeds) -> Outcome {
    unreachable!("refused in main without the tokio feature")
}

/// A worker body: its index in its group and its random generator in, its
/// counts out.
type Work<'a> = &'a (dyn Fn(usize, &mut Rng) -> ThreadStats + Sync);

/// Runs groups of `(role, count, work)` threads that all start together and
/// returns their merged counts.
fn run_together(seeds: &Seeds, groups: &[(&str, usize, Work<'_>)]) -> ThreadStats {
    named!(let start_gate = Event::new(false));
    thread::scope(|scope| {
        let handles: Vec<_> = groups
            .iter()
            .flat_map(|&(role, count, work)| spawn_group(scope, &start_gate, seeds, role, count, work))
            .collect();
        start_gate.set();
        join_all(handles)
    })
}

/// Spawns `count` threads named `<role>-<i>` that wait for `gate`, then run
/// `work`.
fn spawn_group<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    gate: &'env Event,
    seeds: &Seeds,
    role: &str,
    count: usize,
    work: Work<'env>,
) -> Vec<ScopedJoinHandle<'scope, ThreadStats>> {
    (0..count)
        .map(|i| {
            let mut rng = seeds.rng();
            thread::Builder::new()
                .name(format!("{role}-{i}"))
                .spawn_scoped(scope, move || {
                    gate.wait();
                    work(i, &mut rng)
                })
                .expect("spawn a scenario thread")
        })
        .collect()
}

/// Joins every thread and merges their counts; a thread's panic goes on in
/// this thread.
fn join_all(handles: Vec<ScopedJoinHandle<'_, ThreadStats>>) -> ThreadStats {
    let mut total = ThreadStats::default();
    for handle in handles {
        let stats = handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        total.merge(&stats);
    }
    total
}

/// Random generators for the threads: fresh ones, or derived from `--seed`.
struct Seeds {
    base: Option<u64>,
    next: Cell<u64>,
}

impl Seeds {
    fn new(base: Option<u64>) -> Self {
        Seeds {
            base,
            next: Cell::new(0),
        }
    }

    fn rng(&self) -> Rng {
        match self.base {
            Some(base) => {
                let n = self.next.get();
                self.next.set(n + 1);
                Rng::with_seed(base ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            }
            None => Rng::new(),
        }
    }
}

/// Acquires `lock` within `timeout`; `None` if it timed out. A poisoned lock
/// is used anyway: the scenarios' data stays valid whatever happens.
fn lock_within<T>(lock: &ProfiledMutex<T>, timeout: Duration) -> Option<ProfiledMutexGuard<'_, T>> {
    match lock.try_lock_for(timeout) {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Sleeps `ms` milliseconds; no system call at all for 0.
fn pause(ms: u64) {
    if ms > 0 {
        thread::sleep(Duration::from_millis(ms));
    }
}

fn params(value: Value) -> BTreeMap<String, Value> {
    match value {
        Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}
