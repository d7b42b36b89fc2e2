//! Stacks start at the user's function and line, contain none of the
//! profiler's frames, and are cut at the frame limit.

mod common;

use common::{leaf, profile, profile_with};
use lockprof::{named, ProfiledMutex, ProfiledRwLock, Profiler};

#[inline(never)]
fn take_the_lock(lock: &ProfiledMutex<u32>) -> u32 {
    let guard = lock.lock().unwrap(); // <- acquired here
    let v = *guard;
    drop(guard); // <- released here
    v
}

#[test]
fn the_leaf_is_the_calling_function_and_line() {
    named!(let lock = ProfiledMutex::new(7));
    let profile = profile(100.0, || {
        take_the_lock(&lock);
    });
    let name = lock.site().label();
    let acquire = profile
        .samples_of(&name)
        .find(|s| s.acquire > 0)
        .expect("acquire sample");
    let release = profile
        .samples_of(&name)
        .find(|s| s.release > 0)
        .expect("release sample");
    let src = include_str!("stacks_lead_to_the_caller.rs");
    let line_of = |marker: &str| {
        src.lines()
            .position(|l| l.ends_with(marker))
            .expect("marker line") as i64
            + 1
    };

    assert!(
        leaf(acquire).function.ends_with("take_the_lock"),
        "{:?}",
        acquire.frames
    );
    assert!(leaf(acquire).file.ends_with("stacks_lead_to_the_caller.rs"));
    assert_eq!(leaf(acquire).line, line_of("// <- acquired here"));
    assert!(
        leaf(release).function.ends_with("take_the_lock"),
        "{:?}",
        release.frames
    );
    assert_eq!(leaf(release).line, line_of("// <- released here"));
    // The caller comes next: the test's closure (debug info in optimized
    // builds may name it only `{closure#0}`).
    assert!(
        acquire.frames[1].file.ends_with("stacks_lead_to_the_caller.rs"),
        "{:?}",
        acquire.frames
    );

    for s in profile.samples_of(&name) {
        for f in &s.frames {
            assert!(
                !f.function.starts_with("lockprof::"),
                "profiler frame in stack: {f:?}"
            );
            assert!(
                !f.function.contains("<lockprof::"),
                "profiler frame in stack: {f:?}"
            );
            assert!(
                !f.function.starts_with("_ZN") && !f.function.starts_with("_R"),
                "mangled: {f:?}"
            );
            assert!(
                !f.function.contains("::h")
                    || !f
                        .function
                        .rsplit("::h")
                        .next()
                        .unwrap()
                        .chars()
                        .all(|c| c.is_ascii_hexdigit()),
                "hash suffix: {f:?}"
            );
        }
    }
}

#[inline(never)]
fn recurse(depth: usize, lock: &ProfiledRwLock<u32>) {
    if depth == 0 {
        let _ = *lock.read().unwrap();
    } else {
        recurse(depth - 1, lock);
        std::hint::black_box(depth);
    }
}

#[test]
fn deep_stacks_are_cut_at_the_limit_with_an_omitted_frame() {
    named!(let deep = ProfiledRwLock::new(0));
    let profile = profile_with(Profiler::builder().capture_pct(100.0).max_frames(8), || {
        recurse(40, &deep)
    });
    let name = deep.site().label();
    let s = profile
        .samples_of(&name)
        .find(|s| s.acquire > 0)
        .expect("acquire sample");
    assert_eq!(s.frames.len(), 9, "{:?}", s.frames);
    assert!(
        s.frames[..8].iter().all(|f| f.function.ends_with("recurse")),
        "{:?}",
        s.frames
    );
    let last = &s.frames[8].function;
    assert!(
        last.starts_with('<') && last.ends_with(" frames omitted>"),
        "{last}"
    );
    let omitted: usize = last[1..].split(' ').next().unwrap().parse().unwrap();
    // 41 recurse frames in all, 8 kept, plus the test's own callers.
    assert!(omitted >= 33, "{last}");
}
