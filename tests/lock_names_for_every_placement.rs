//! Every lock shows up by `<file>:<line>:<variable name>` for all five
//! placements of the reference stress test, and by `<file>:<line>` unnamed.

mod common;

use common::{label, profile};
use lockprof::{named, ProfiledMutex, ProfiledReentrantMutex, ProfiledRwLock};
use std::sync::Arc;

const GLOBAL_LINE: u32 = line!() + 1;
named!(static GLOBAL_DATABASE_LOCK: ProfiledMutex<u64> = ProfiledMutex::new(0));

struct DatabaseConnection {
    connection_lock: ProfiledMutex<u32>,
}

impl DatabaseConnection {
    const LOCK_LINE: u32 = line!() + 3;
    fn new() -> Self {
        named!(DatabaseConnection {
            connection_lock: ProfiledMutex::new(0),
        })
    }
}

struct ConnectionPool {
    primary: DatabaseConnection,
    size: usize,
}

struct UserManager {
    user_session_lock: ProfiledRwLock<Vec<u32>>,
    _internal_lock: ProfiledReentrantMutex<()>,
    pool: ConnectionPool,
}

impl UserManager {
    const SESSION_LOCK_LINE: u32 = line!() + 3;
    fn new() -> Self {
        named!(Self {
            user_session_lock: ProfiledRwLock::new(Vec::new()),
            _internal_lock: ProfiledReentrantMutex::new(()),
            pool: ConnectionPool {
                primary: DatabaseConnection::new(),
                size: 1,
            },
        })
    }
}

#[test]
fn all_five_placements_and_the_unnamed_case_have_exact_labels() {
    let file = file!();
    let mut local_line = 0;
    let mut unnamed_line = 0;
    let profile = profile(100.0, || {
        local_line = line!() + 1;
        named!(let request_lock = Arc::new(ProfiledMutex::new(0)));
        unnamed_line = line!() + 1;
        let plain = ProfiledMutex::new(0);
        let users = UserManager::new();

        *request_lock.lock().unwrap() += 1;
        *plain.lock().unwrap() += 1;
        *GLOBAL_DATABASE_LOCK.lock().unwrap() += 1;
        users.user_session_lock.write().unwrap().push(1);
        drop(users._internal_lock.lock());
        *users.pool.primary.connection_lock.lock().unwrap() += 1;
        assert_eq!(users.pool.size, 1);
    });

    let names = profile.lock_names();
    let expected = [
        label(file, local_line, "request_lock"),
        label(file, unnamed_line, ""),
        label(file, GLOBAL_LINE, "GLOBAL_DATABASE_LOCK"),
        label(file, UserManager::SESSION_LOCK_LINE, "user_session_lock"),
        label(file, UserManager::SESSION_LOCK_LINE + 1, "_internal_lock"),
        label(file, DatabaseConnection::LOCK_LINE, "connection_lock"),
    ];
    for name in &expected {
        assert!(names.contains(name), "missing {name:?} in {names:?}");
    }
    assert_eq!(names.len(), expected.len(), "unexpected names: {names:?}");
}

#[test]
fn instances_made_in_a_loop_are_rows_of_their_own() {
    let file = file!();
    let mut line = 0;
    let profile = profile(100.0, || {
        let shards: Vec<ProfiledMutex<u64>> = (0..3)
            .map(|i| named!(shard_lock[i] = ProfiledMutex::new(0)))
            .collect();
        line = shards[0].site().line();
        for (i, shard) in shards.iter().enumerate() {
            for _ in 0..=i {
                *shard.lock().unwrap() += 1;
            }
        }
        // A second lock of an instance shares its name.
        let again = named!(shard_lock[2] = ProfiledMutex::new(0));
        assert!(std::ptr::eq(
            again.site().name().unwrap(),
            shards[2].site().name().unwrap()
        ));
    });
    for i in 0..3 {
        let name = label(file, line, &format!("shard_lock[{i}]"));
        let acquired: i64 = profile.samples_of(&name).map(|s| s.acquire).sum();
        assert_eq!(acquired, i + 1, "{name} in {:?}", profile.lock_names());
    }
}

#[test]
fn names_given_by_hand_are_used() {
    let line = line!() + 1;
    let lock = ProfiledMutex::new(()).named("by_hand");
    assert_eq!(lock.site().name(), Some("by_hand"));
    assert_eq!(lock.site().label(), label(file!(), line, "by_hand"));
}
