//! Lock names with unicode, quotes, newlines, control characters and 10 kB of
//! text come back from the written pprof exactly as given.

mod common;

use common::{profile, totals};
use lockprof::ProfiledMutex;

#[test]
fn unusual_names_are_written_and_read_back_unchanged() {
    let long: String = "lock-".repeat(2048); // 10 kB
    let names: Vec<&'static str> = vec![
        "ünïcødé_锁_🔒",
        "with \"double\" and 'single' quotes",
        "new\nline and\ttab and \r return",
        "back\\slash, colon: and = sign",
        "nul \0 and escape \u{1b}[31m",
        "",
        " ",
        Box::leak(long.into_boxed_str()),
    ];
    let locks: Vec<ProfiledMutex<u32>> = names
        .iter()
        .map(|&n| ProfiledMutex::new(0).named(n))
        .collect();
    let profile = profile(100.0, || {
        for (i, lock) in locks.iter().enumerate() {
            for _ in 0..=i {
                *lock.lock().unwrap() += 1;
            }
        }
    });
    for (i, (lock, name)) in locks.iter().zip(&names).enumerate() {
        let label = lock.site().label();
        assert!(label.ends_with(name), "{label:?} does not end with {name:?}");
        let (acquires, _, releases, _) = totals(&profile, &label);
        assert_eq!(
            (acquires, releases),
            (i as i64 + 1, i as i64 + 1),
            "lock named {:?}",
            &name[..name.len().min(40)]
        );
    }
}
