//! End-to-end check that `ProfiledReentrantMutex` locks show up by variable
//! name: the phases of `lock_production_stress_test` with re-entrant mutexes,
//! plus a seventh that re-enters a lock (`track_login_attempts` calls
//! `validate_attempt` under the same lock).
//!
//! ```text
//! cargo run --release -p lockprof-stress --features datadog --bin rlock_production_stress_test -- [duration_s=120] [workers=8]
//! ```
//!
//! Sets `DD_SERVICE=rlock-production-stress-test`, `DD_ENV=stress-test`,
//! `DD_VERSION=1.0.0` and 100% capture unless the environment sets them, and
//! starts the profiler with `lockprof::try_start_from_env()`. Profiles go wherever
//! the environment sends them (local files by default); the last lines say
//! where. `scripts/run_lock_production_stress_test.sh` wraps this with checks
//! of the upload settings (pass it this program's name).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use lockprof::{named, ProfiledReentrantMutex as ReentrantMutex};

use lockprof_stress::production;

const SERVICE: &str = "rlock-production-stress-test";
const PHASES: usize = 7;

/// The names each phase should put in the profile.
const EXPECTED_NAMES: &[&str] = &[
    "request_lock",
    "response_lock",
    "GLOBAL_USER_SESSION_LOCK",
    "GLOBAL_CACHE_LOCK",
    "GLOBAL_DATABASE_LOCK",
    "user_session_lock",
    "user_cache_lock",
    "cache_read_lock",
    "cache_write_lock",
    "connection_pool_lock",
    "query_lock",
    "_internal_lock",
    "login_attempts_lock",
];

// Statics: Rust's spelling of the reference's module-level globals.
named!(
    static GLOBAL_USER_SESSION_LOCK: ReentrantMutex<Cell<u64>> = ReentrantMutex::new(Cell::new(0));
);
named!(
    static GLOBAL_CACHE_LOCK: ReentrantMutex<Cell<u64>> = ReentrantMutex::new(Cell::new(0));
);
named!(
    static GLOBAL_DATABASE_LOCK: ReentrantMutex<Cell<u64>> = ReentrantMutex::new(Cell::new(0));
);

/// Re-entrant guards give shared access: counters are `Cell`s.
fn bump(counter: &Cell<u64>) {
    counter.set(counter.get() + 1);
}

fn hold(micros: u64) {
    sleep(Duration::from_micros(micros));
}

/// Struct members.
struct UserManager {
    user_session_lock: ReentrantMutex<RefCell<HashMap<String, u64>>>,
    user_cache_lock: ReentrantMutex<Cell<u64>>,
    login_attempts_lock: ReentrantMutex<Cell<u64>>,
}

impl UserManager {
    fn new() -> Self {
        named!(Self {
            user_session_lock: ReentrantMutex::new(RefCell::new(HashMap::new())),
            user_cache_lock: ReentrantMutex::new(Cell::new(0)),
            login_attempts_lock: ReentrantMutex::new(Cell::new(0)),
        })
    }

    fn authenticate_user(&self, user_id: &str, iterations: usize) {
        for _ in 0..iterations {
            let sessions = self.user_session_lock.lock();
            *sessions.borrow_mut().entry(user_id.to_owned()).or_default() += 1;
            hold(1000);
        }
    }

    /// Takes `login_attempts_lock`, then re-enters it in `validate_attempt`.
    fn track_login_attempts(&self, iterations: usize) {
        for _ in 0..iterations {
            let attempts = self.login_attempts_lock.lock();
            bump(&attempts);
            self.validate_attempt();
            hold(500);
        }
    }

    fn validate_attempt(&self) {
        let attempts = self.login_attempts_lock.lock(); // re-entered: this thread holds it
        let _valid = attempts.get() > 0;
        hold(200);
    }

    fn update_cache(&self, iterations: usize) {
        for _ in 0..iterations {
            bump(&self.user_cache_lock.lock());
            hold(500);
        }
    }
}

/// More struct members, one of them private by convention.
struct CacheManager {
    cache_read_lock: ReentrantMutex<Cell<u64>>,
    cache_write_lock: ReentrantMutex<Cell<u64>>,
    _internal_lock: ReentrantMutex<Cell<u64>>,
}

impl CacheManager {
    fn new() -> Self {
        named!(Self {
            cache_read_lock: ReentrantMutex::new(Cell::new(0)),
            cache_write_lock: ReentrantMutex::new(Cell::new(0)),
            _internal_lock: ReentrantMutex::new(Cell::new(0)),
        })
    }

    fn read_cache(&self, iterations: usize) {
        for _ in 0..iterations {
            let _hits = self.cache_read_lock.lock().get();
            hold(300);
        }
    }

    fn write_cache(&self, iterations: usize) {
        for _ in 0..iterations {
            bump(&self.cache_write_lock.lock());
            hold(2000);
        }
    }

    fn internal_operation(&self, iterations: usize) {
        for _ in 0..iterations {
            bump(&self._internal_lock.lock());
            hold(500);
        }
    }
}

/// Nested structs: a connection, with its own user manager, inside a pool.
struct DatabaseConnection {
    query_lock: ReentrantMutex<Cell<u64>>,
    user_manager: UserManager,
}

struct ConnectionPool {
    connection_pool_lock: ReentrantMutex<Cell<u64>>,
    connection: DatabaseConnection,
}

impl ConnectionPool {
    fn new() -> Self {
        named!(Self {
            connection_pool_lock: ReentrantMutex::new(Cell::new(0)),
            connection: named!(DatabaseConnection {
                query_lock: ReentrantMutex::new(Cell::new(0)),
                user_manager: UserManager::new(),
            }),
        })
    }

    fn execute_query(&self, iterations: usize) {
        for _ in 0..iterations {
            bump(&self.connection.query_lock.lock());
            hold(1000);
        }
    }

    fn get_connection(&self, iterations: usize) {
        for _ in 0..iterations {
            bump(&self.connection_pool_lock.lock());
            hold(2000);
        }
    }

    fn execute_with_user_auth(&self, user_id: &str, iterations: usize) {
        for _ in 0..iterations {
            let sessions = self.connection.user_manager.user_session_lock.lock();
            *sessions.borrow_mut().entry(user_id.to_owned()).or_default() += 1;
            hold(1000);
        }
    }
}

// One round of each phase: 10 iterations, as in the reference.

fn local_named_locks(_worker: usize) {
    for _ in 0..10 {
        named!(let request_lock = ReentrantMutex::new(Cell::new(0u64)));
        named!(let response_lock = ReentrantMutex::new(Cell::new(0u64)));
        {
            bump(&request_lock.lock());
            hold(500);
        }
        {
            bump(&response_lock.lock());
            hold(500);
        }
        hold(1000);
    }
}

fn global_locks(_worker: usize) {
    for i in 0..10 {
        {
            bump(&GLOBAL_USER_SESSION_LOCK.lock());
            hold(1000);
        }
        {
            bump(&GLOBAL_CACHE_LOCK.lock());
            hold(1000);
        }
        if i % 5 == 0 {
            bump(&GLOBAL_DATABASE_LOCK.lock());
            hold(2000);
        }
    }
}

fn struct_member_locks(worker: usize) {
    let users = UserManager::new();
    let cache = CacheManager::new();
    let user_id = format!("user-{worker}");
    for i in 0..10 {
        users.authenticate_user(&user_id, 5);
        users.update_cache(5);
        cache.read_cache(5);
        if i % 3 == 0 {
            cache.write_cache(2);
        }
    }
}

fn nested_struct_locks(worker: usize) {
    let pool = ConnectionPool::new();
    let user_id = format!("user-{worker}");
    for _ in 0..10 {
        pool.execute_query(5);
        pool.get_connection(3);
        pool.execute_with_user_auth(&user_id, 3);
    }
}

fn private_field_locks(_worker: usize) {
    let cache = CacheManager::new();
    for _ in 0..10 {
        cache.internal_operation(10);
    }
}

fn reentrant_locks(_worker: usize) {
    let users = UserManager::new();
    for _ in 0..10 {
        users.track_login_attempts(5);
    }
}

fn high_contention(shared: &UserManager) {
    for _ in 0..10 {
        let _sessions = shared.user_session_lock.lock();
        hold(5000);
    }
}

fn main() {
    production::set_env_defaults(SERVICE);
    let (duration, workers) = production::parse_args("rlock_production_stress_test", 120.0, 8);
    production::print_header(
        "RLock Production Stress Test",
        duration,
        workers,
        PHASES,
        EXPECTED_NAMES,
    );
    let profiler = production::start();

    let started = Instant::now();
    let phase = duration / PHASES as u32;
    let shared = UserManager::new();
    production::run_phase(1, "Local Named Locks", phase, workers, &local_named_locks);
    production::run_phase(2, "Global (static) Named Locks", phase, workers, &global_locks);
    production::run_phase(3, "Struct Member Locks", phase, workers, &struct_member_locks);
    production::run_phase(4, "Nested Struct Locks", phase, workers, &nested_struct_locks);
    production::run_phase(5, "Private Field Locks", phase, workers, &private_field_locks);
    production::run_phase(6, "High Contention (Named Locks)", phase, workers, &|_| {
        high_contention(&shared)
    });
    production::run_phase(7, "Re-entrant Locks", phase, workers, &reentrant_locks);
    production::finish(profiler, started);
}
