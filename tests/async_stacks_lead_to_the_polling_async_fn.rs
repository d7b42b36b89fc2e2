//! Stacks of async acquisitions: the leaf is the user's async fn at the
//! `.await` of `lock()`, the task's async fns follow, and tokio's scheduler
//! below them is one `<tokio runtime>` frame. Outside a task (`block_on`,
//! `blocking_lock`) stacks are left whole.
#![cfg(feature = "tokio")]

mod common;

use common::{leaf, profile, totals};
use lockprof::read::labels;
use lockprof::{named, with_task_name, ProfiledAsyncMutex, ProfiledAsyncRwLock};
use std::sync::Arc;

#[inline(never)]
async fn update(lock: &ProfiledAsyncMutex<u32>) {
    let mut guard = lock.lock().await; // <- acquired here
    *guard += 1;
    tokio::task::yield_now().await;
    drop(guard); // <- released here
}

fn line_of(marker: &str) -> i64 {
    let src = include_str!("async_stacks_lead_to_the_polling_async_fn.rs");
    src.lines().position(|l| l.ends_with(marker)).unwrap() as i64 + 1
}

#[test]
fn in_a_task_the_leaf_is_the_async_fn_and_the_root_is_the_runtime() {
    named!(let lock = Arc::new(ProfiledAsyncMutex::new(0)));
    let l = Arc::clone(&lock);
    let profile = profile(100.0, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async move {
            let plain = tokio::spawn({
                let l = Arc::clone(&l);
                async move { update(&l).await }
            });
            let named = tokio::spawn(with_task_name("updater", async move { update(&l).await }));
            plain.await.unwrap();
            named.await.unwrap();
        });
    });
    let name = lock.site().label();
    assert_eq!(totals(&profile, &name).0, 2);
    for s in profile.samples_of(&name) {
        let functions: Vec<&str> = s.frames.iter().map(|f| f.function.as_str()).collect();
        let (marker, kind) = if s.acquire > 0 {
            ("// <- acquired here", "acquire")
        } else {
            ("// <- released here", "release")
        };
        // By file and line: optimized builds' debug info may give the async
        // fn only its short name (`{async_fn#0}`).
        assert!(
            leaf(s)
                .file
                .ends_with("async_stacks_lead_to_the_polling_async_fn.rs"),
            "{kind}: {functions:#?}"
        );
        assert_eq!(leaf(s).line, line_of(marker), "{kind}: {functions:#?}");
        // update, the task's async block, the runtime: the task-name wrapper
        // is dropped with the runtime's frames.
        assert_eq!(functions.len(), 3, "{kind}: {functions:#?}");
        assert!(
            s.frames[1]
                .file
                .ends_with("async_stacks_lead_to_the_polling_async_fn.rs"),
            "{functions:#?}"
        );
        assert_eq!(functions[2], "<tokio runtime>");
        assert!(s.label_num(labels::TASK_ID).is_some());
    }
    assert_eq!(
        profile
            .samples_of(&name)
            .filter(|s| s.label_str(labels::TASK_NAME) == Some("updater"))
            .map(|s| s.acquire + s.release)
            .sum::<i64>(),
        2
    );
}

#[test]
fn outside_a_task_stacks_are_whole_and_have_no_task_label() {
    named!(let m = ProfiledAsyncMutex::new(1));
    named!(let rw = ProfiledAsyncRwLock::new(1));
    let profile = profile(100.0, || {
        *m.blocking_lock() += 1;
        assert!(m.try_lock().is_ok());
        *rw.blocking_write() += 1;
        assert_eq!(*rw.blocking_read(), 2);
    });
    let name = m.site().label();
    assert_eq!(totals(&profile, &name).0, 2);
    for s in profile.samples_of(&name) {
        assert!(s.label_num(labels::TASK_ID).is_none());
        assert!(s.label_str(labels::TASK_NAME).is_none());
        assert!(s.frames.iter().all(|f| f.function != "<tokio runtime>"));
        assert!(s
            .frames
            .iter()
            .any(|f| f.function.contains("outside_a_task_stacks_are_whole")));
    }
    assert_eq!(totals(&profile, &rw.site().label()).0, 2);
    assert!(format!("{m:?}").contains("data: 2"), "{m:?}");
}
