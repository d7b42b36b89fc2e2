//! Stack capture on the sampled path: return addresses only, symbolized later
//! on the profiler's thread.
//!
//! Two unwinders:
//! - frame-pointer walking (about 150 ns for 30 frames), used when the program
//!   is built with `-C force-frame-pointers=yes` and a calibration walk at
//!   profiler start agrees with `backtrace::trace`;
//! - `backtrace::trace` (DWARF unwinding, 6–19 µs), always correct, used
//!   otherwise.
//!
//! The frame-pointer walk never reads outside the current thread's stack, so a
//! frame without a frame pointer ends the walk early instead of faulting.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// Frames captured beyond the user's limit, to make room for the profiler's
/// own frames at the leaf, which are trimmed at symbolization.
pub(crate) const INTERNAL_SLACK: usize = 16;

/// The furthest a walk goes just to count omitted frames.
const MAX_COUNTED: usize = 4096;

/// A captured stack, leaf first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Stack {
    /// Return addresses (the leaf's too, as it is a call into the profiler).
    pub(crate) ips: Box<[usize]>,
    /// Frames past the end of `ips` that were not kept.
    pub(crate) omitted: u32,
}

/// Which unwinder to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Unwinder {
    /// Frame pointers when they are detected to work, `backtrace` otherwise.
    #[default]
    Auto,
    /// Always frame pointers (falls back to `backtrace` on platforms without
    /// a frame-pointer walker).
    FramePointers,
    /// Always `backtrace::trace`.
    Backtrace,
}

const FP_UNKNOWN: u8 = 0;
const FP_YES: u8 = 1;
const FP_NO: u8 = 2;

/// Whether the frame-pointer walker is in use, decided by [`select`].
static USE_FP: AtomicU8 = AtomicU8::new(FP_UNKNOWN);

/// Chooses the unwinder for the next session. Cold: runs at profiler start.
pub(crate) fn select(unwinder: Unwinder) -> bool {
    let fp = match unwinder {
        Unwinder::Backtrace => false,
        Unwinder::FramePointers => fp::AVAILABLE,
        Unwinder::Auto => fp::AVAILABLE && frame_pointers_agree_with_backtrace(),
    };
    USE_FP.store(if fp { FP_YES } else { FP_NO }, Relaxed);
    fp
}

/// Captures the current stack, keeping at most `max_frames + INTERNAL_SLACK`
/// addresses.
#[inline(never)]
pub(crate) fn capture(max_frames: usize) -> Stack {
    let limit = max_frames.saturating_add(INTERNAL_SLACK);
    if USE_FP.load(Relaxed) == FP_YES {
        if let Some(stack) = fp::walk(limit) {
            return stack;
        }
    }
    capture_with_backtrace(limit)
}

#[inline(never)]
pub(crate) fn capture_with_backtrace(limit: usize) -> Stack {
    let mut ips = Vec::with_capacity(limit.min(128));
    let mut seen = 0usize;
    backtrace::trace(|frame| {
        seen += 1;
        if ips.len() < limit {
            ips.push(frame.ip() as usize);
        }
        seen < MAX_COUNTED
    });
    Stack {
        omitted: (seen - ips.len()) as u32,
        ips: ips.into_boxed_slice(),
    }
}

/// The calibration: walk the same stack both ways from a known call chain and
/// check that the frame-pointer frames are the ones `backtrace` finds.
fn frame_pointers_agree_with_backtrace() -> bool {
    let (fp_stack, bt_stack) = calibration_a();
    fp_matches_backtrace(&fp_stack, &bt_stack, 3)
}

/// True when `fp` and `bt`, captured in the same function, agree on `want`
/// consecutive callers. The leaf frames differ (each unwinder has its own
/// internals and call site), so the comparison starts at the first of the
/// first three frame-pointer frames that `bt` also has.
pub(crate) fn fp_matches_backtrace(fp: &[usize], bt: &[usize], want: usize) -> bool {
    let common = fp
        .iter()
        .take(3)
        .enumerate()
        .find_map(|(i, ip)| bt.iter().position(|b| b == ip).map(|j| (i, j)));
    let Some((i, j)) = common else {
        return false;
    };
    fp.len() >= i + want && bt.len() >= j + want && fp[i..i + want] == bt[j..j + want]
}

#[inline(never)]
fn calibration_a() -> (Vec<usize>, Vec<usize>) {
    let r = calibration_b();
    std::hint::black_box(r)
}

#[inline(never)]
fn calibration_b() -> (Vec<usize>, Vec<usize>) {
    let r = calibration_c();
    std::hint::black_box(r)
}

#[inline(never)]
fn calibration_c() -> (Vec<usize>, Vec<usize>) {
    let fp = fp::walk(32).map(|s| s.ips.into_vec()).unwrap_or_default();
    let bt = capture_with_backtrace(64).ips.into_vec();
    std::hint::black_box((fp, bt))
}

thread_local! {
    /// This thread's stack bounds, `(0, 0)` until looked up, `(1, 1)` if the
    /// lookup failed.
    static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

#[cfg(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_os = "linux"))]
mod fp {
    use super::*;

    pub(super) const AVAILABLE: bool = true;

    /// Frames a walk keeps without touching the heap until the end: the
    /// default `max_frames` (64) plus [`INTERNAL_SLACK`] fit.
    const BUF_FRAMES: usize = 96;

    #[inline(always)]
    fn frame_pointer() -> usize {
        let fp: usize;
        // SAFETY: reads a register, no memory access.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
            #[cfg(target_arch = "aarch64")]
            std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
        }
        fp
    }

    fn bounds() -> Option<(usize, usize)> {
        let b = BOUNDS.try_with(|b| {
            if b.get() == (0, 0) {
                b.set(lookup_bounds().unwrap_or((1, 1)));
            }
            b.get()
        });
        match b {
            Ok((lo, hi)) if hi > lo + 1 => Some((lo, hi)),
            _ => None,
        }
    }

    fn lookup_bounds() -> Option<(usize, usize)> {
        // SAFETY: `attr` is initialised by pthread_getattr_np before use and
        // destroyed after; the out-pointers are valid locals.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                return None;
            }
            let mut addr: *mut libc::c_void = std::ptr::null_mut();
            let mut size: libc::size_t = 0;
            let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
            libc::pthread_attr_destroy(&mut attr);
            if rc != 0 || addr.is_null() || size == 0 {
                return None;
            }
            Some((addr as usize, addr as usize + size))
        }
    }

    /// Walks the frame-pointer chain from the caller's frame. `None` when the
    /// thread's stack bounds are unknown.
    #[inline(never)]
    pub(super) fn walk(limit: usize) -> Option<Stack> {
        let (lo, hi) = bounds()?;
        // Addresses go to a buffer on this stack first, so that the one heap
        // allocation is of the exact size (a `Vec` shrunk into a box would
        // reallocate on every sampled event).
        let mut buf = [std::mem::MaybeUninit::<usize>::uninit(); BUF_FRAMES];
        let mut spill = Vec::new();
        let mut kept = 0usize;
        let mut seen = 0usize;
        let mut fp = frame_pointer();
        while seen < MAX_COUNTED {
            // A frame record is two words: the caller's frame pointer, then
            // the return address. Stop at anything that is not a record
            // inside this thread's stack.
            if fp < lo || fp % std::mem::align_of::<usize>() != 0 || fp > hi - 16 {
                break;
            }
            // SAFETY: `fp..fp + 16` lies inside this thread's mapped stack
            // (checked above) and is aligned, so both reads are of valid
            // memory; a stale value only yields a wrong address, which
            // symbolization reports as unknown.
            let (next, ret) = unsafe {
                let p = fp as *const usize;
                (p.read(), p.add(1).read())
            };
            if ret == 0 {
                break;
            }
            seen += 1;
            if kept < limit {
                match buf.get_mut(kept) {
                    Some(slot) => {
                        slot.write(ret);
                    }
                    None => spill.push(ret),
                }
                kept += 1;
            }
            // The stack grows down: callers' frames are at higher addresses.
            if next <= fp {
                break;
            }
            fp = next;
        }
        // SAFETY: the first `min(kept, BUF_FRAMES)` slots were written above.
        let buffered =
            unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<usize>(), kept.min(BUF_FRAMES)) };
        let ips: Box<[usize]> = if spill.is_empty() {
            Box::from(buffered)
        } else {
            buffered.iter().copied().chain(spill).collect()
        };
        Some(Stack {
            omitted: (seen - kept) as u32,
            ips,
        })
    }
}

#[cfg(not(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_os = "linux")))]
mod fp {
    use super::*;

    pub(super) const AVAILABLE: bool = false;

    pub(super) fn walk(_limit: usize) -> Option<Stack> {
        None
    }
}

#[cfg(test)]
pub(crate) fn walk_frame_pointers_for_test(limit: usize) -> Option<Stack> {
    fp::walk(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn deep(n: usize) -> (Vec<usize>, Vec<usize>) {
        if n == 0 {
            let fp = walk_frame_pointers_for_test(64).unwrap().ips.into_vec();
            let bt = capture_with_backtrace(80).ips.into_vec();
            return (fp, bt);
        }
        let r = deep(n - 1);
        std::hint::black_box(r)
    }

    #[test]
    fn frame_pointer_walk_finds_the_same_frames_as_backtrace() {
        let (fp, bt) = deep(30);
        assert!(
            fp.len() >= 31,
            "frame-pointer walk found only {} frames",
            fp.len()
        );
        // Every caller in our own call chain (the recursive calls and the
        // test function) must agree one to one.
        assert!(
            fp_matches_backtrace(&fp, &bt, 31),
            "frame pointers: {fp:x?}\nbacktrace: {bt:x?}"
        );
    }

    #[test]
    fn calibration_accepts_this_build() {
        // The crate's .cargo/config.toml builds with frame pointers.
        assert!(frame_pointers_agree_with_backtrace());
    }
}
