//! The eh_frame unwinder finds the frames `backtrace::trace` finds, in the
//! build as it is (run in the plain build, where frame pointers are omitted
//! and this unwinder is the one `Auto` picks): deep recursion, closures, a
//! spawned thread, a tokio task, an inlined helper, and a frame of libc's
//! between ours.
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::cell::RefCell;
use std::hint::black_box;

use lockprof::__bench::eh_frame_and_backtrace;

const LIMIT: usize = 128;

/// The same stack by the eh_frame unwinder and by `backtrace`.
type Both = (Option<Vec<usize>>, Vec<usize>);

/// Both walks agree from the first frame of ours that `backtrace` also has
/// (the leaves are each unwinder's own) to the end of the stack, and that
/// stretch has at least `callers` frames.
#[track_caller]
fn assert_agree((ours, bt): Both, callers: usize) {
    let ours = ours.expect("the eh_frame unwinder is available here");
    let start = ours
        .iter()
        .take(3)
        .enumerate()
        .find_map(|(i, ip)| bt.iter().position(|b| b == ip).map(|j| (i, j)));
    let Some((i, j)) = start else {
        panic!("no common frame\neh_frame: {ours:x?}\nbacktrace: {bt:x?}");
    };
    assert!(
        ours.len() - i >= callers,
        "eh_frame found {} callers, want {callers}\neh_frame: {ours:x?}\nbacktrace: {bt:x?}",
        ours.len() - i
    );
    // libgcc ends the main thread's and spawned threads' stacks with a frame
    // whose address is 0, the caller of `_start` or `clone3`; the eh_frame
    // walk ends at `_start`/`clone3` itself.
    let bt_end = bt.iter().rposition(|&ip| ip != 0).map_or(0, |k| k + 1);
    assert_eq!(
        ours[i..],
        bt[j..bt_end],
        "eh_frame: {ours:x?}\nbacktrace: {bt:x?}"
    );
    // Every stack here is whole: none was cut short at a frame the unwinder
    // could not unwind.
    assert_eq!(lockprof::__bench::eh_frame_truncated_walks(), 0);
}

#[inline(never)]
fn recurse(n: usize) -> Both {
    if n == 0 {
        return eh_frame_and_backtrace(LIMIT);
    }
    let r = recurse(n - 1);
    black_box(r)
}

#[test]
fn deep_recursion() {
    assert_agree(recurse(40), 41);
}

#[inline(never)]
fn call<R>(f: impl FnOnce() -> R) -> R {
    let r = f();
    black_box(r)
}

#[test]
fn closures() {
    let k = black_box(3);
    let r = call(|| call(move || call(|| recurse(k))));
    assert_agree(r, 7);
}

#[test]
fn spawned_thread() {
    let r = std::thread::spawn(|| recurse(10)).join().unwrap();
    assert_agree(r, 11);
}

#[test]
fn tokio_task() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let r = rt.block_on(async {
        tokio::spawn(async {
            tokio::task::yield_now().await;
            recurse(5)
        })
        .await
        .unwrap()
    });
    assert_agree(r, 6);
}

#[inline(always)]
fn inlined_helper() -> Both {
    eh_frame_and_backtrace(LIMIT)
}

#[inline(never)]
fn calls_inlined_helper() -> Both {
    let r = inlined_helper();
    black_box(r)
}

#[test]
fn inlined_helper_frame() {
    assert_agree(calls_inlined_helper(), 2);
}

thread_local! {
    static FROM_COMPARATOR: RefCell<Option<Both>> = const { RefCell::new(None) };
}

/// Called back by libc's `qsort`: captures once, from inside libc's frames.
extern "C" fn compare(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    FROM_COMPARATOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(recurse(2));
        }
    });
    // SAFETY: qsort passes pointers to two elements of the `u64` array.
    let (a, b) = unsafe { (*a.cast::<u64>(), *b.cast::<u64>()) };
    a.cmp(&b) as libc::c_int
}

#[test]
fn through_a_frame_of_libc() {
    let mut v: Vec<u64> = (0..64).rev().collect();
    // SAFETY: `v` is a valid array of `len` u64 elements and `compare` reads
    // two of them.
    unsafe {
        libc::qsort(
            v.as_mut_ptr().cast(),
            v.len(),
            std::mem::size_of::<u64>(),
            Some(compare),
        );
    }
    assert!(v.windows(2).all(|w| w[0] <= w[1]));
    let r = FROM_COMPARATOR.with(|c| c.borrow_mut().take()).unwrap();
    // recurse(2): 3 frames, the comparator, libc's sort (at least one frame),
    // this test and its callers.
    assert_agree(r.clone(), 6);
    // And one of those frames is libc's, not this program's.
    let here = object_base(through_a_frame_of_libc as fn() as usize);
    assert!(here.is_some());
    let ours = r.0.unwrap();
    assert!(
        ours.iter()
            .any(|&ip| object_base(ip).is_some_and(|b| Some(b) != here)),
        "no frame outside this program"
    );
}

/// The load address of the object that holds `ip`.
fn object_base(ip: usize) -> Option<usize> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the address and fills `info`; it is read
    // only when dladdr says it filled it.
    unsafe {
        if libc::dladdr(ip as *const libc::c_void, info.as_mut_ptr()) == 0 {
            return None;
        }
        Some(info.assume_init().dli_fbase as usize)
    }
}
