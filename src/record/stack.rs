//! Stack capture on the sampled path: return addresses only, symbolized later
//! on the profiler's thread.
//!
//! Three unwinders, in the order [`Unwinder::Auto`] tries them:
//! - frame-pointer walking (about 110 ns for 30 frames), used when the program
//!   is built with `-C force-frame-pointers=yes` and a calibration walk at
//!   profiler start agrees with `backtrace::trace`;
//! - the eh_frame unwinder ([`unwind`], x86_64 Linux): the binary's unwind
//!   tables with each address's rule cached per thread, for a plain build
//!   (frame pointers omitted), when its own calibration walk agrees;
//! - `backtrace::trace` (libgcc's DWARF unwinding, 5–19 µs), always correct,
//!   used otherwise.
//!
//! The first two never read outside the current thread's stack, so a frame
//! they cannot unwind ends the walk early instead of faulting.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod unwind;

/// Frames captured beyond the user's limit, to make room for the profiler's
/// own frames at the leaf, which are trimmed at symbolization.
pub(crate) const INTERNAL_SLACK: usize = 16;

/// The furthest a walk goes just to count omitted frames.
const MAX_COUNTED: usize = 4096;

/// A captured stack, leaf first, as the recorder keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Stack {
    /// Return addresses (the leaf's too, as it is a call into the profiler).
    pub(crate) ips: Arc<[usize]>,
    /// Frames past the end of `ips` that were not kept.
    pub(crate) omitted: u32,
    /// [`hash_frames`] of the above, computed once at capture.
    pub(crate) hash: u64,
}

impl Stack {
    pub(crate) fn new(ips: &[usize], omitted: u32) -> Stack {
        Stack {
            ips: Arc::from(ips),
            omitted,
            hash: hash_frames(ips, omitted),
        }
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn frames(&self) -> Frames<'_> {
        Frames {
            ips: &self.ips,
            omitted: self.omitted,
            hash: self.hash,
        }
    }
}

impl PartialEq for Stack {
    fn eq(&self, other: &Stack) -> bool {
        self.hash == other.hash
            && self.omitted == other.omitted
            && (Arc::ptr_eq(&self.ips, &other.ips) || self.ips == other.ips)
    }
}

impl Eq for Stack {}

/// A captured stack, borrowed: from a [`StackBuf`] on the sampling thread's
/// stack (nothing allocated) or from a [`Stack`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frames<'a> {
    pub(crate) ips: &'a [usize],
    pub(crate) omitted: u32,
    pub(crate) hash: u64,
}

/// A stack's frames in a buffer that the capturing thread allocated ahead
/// of time, so that sending a new stack allocates nothing while a user's
/// lock is held.
#[derive(Debug, Default)]
pub(crate) struct BufferedStack {
    pub(crate) ips: Vec<usize>,
    pub(crate) omitted: u32,
    pub(crate) hash: u64,
}

impl BufferedStack {
    /// Room for a stack of `max_frames`.
    pub(crate) fn with_room(max_frames: usize) -> BufferedStack {
        BufferedStack {
            ips: Vec::with_capacity(max_frames.saturating_add(INTERNAL_SLACK)),
            omitted: 0,
            hash: 0,
        }
    }

    /// Whether `frames` fit without reallocating.
    pub(crate) fn fits(&self, frames: &Frames<'_>) -> bool {
        self.ips.capacity() >= frames.ips.len()
    }

    pub(crate) fn fill(&mut self, frames: &Frames<'_>) {
        self.ips.clear();
        self.ips.extend_from_slice(frames.ips);
        self.omitted = frames.omitted;
        self.hash = frames.hash;
    }

    pub(crate) fn to_stack(&self) -> Stack {
        Stack {
            ips: Arc::from(&self.ips[..]),
            omitted: self.omitted,
            hash: self.hash,
        }
    }
}

impl Frames<'_> {
    pub(crate) fn to_stack(self) -> Stack {
        Stack {
            ips: Arc::from(self.ips),
            omitted: self.omitted,
            hash: self.hash,
        }
    }
}

/// Frames kept in a [`StackBuf`] without allocating.
const INLINE_FRAMES: usize = 96;

/// A stack captured into a buffer that lives on the capturing thread's stack:
/// a sampled event allocates only when its stack is new to the recorder.
///
/// A walk only stores each frame (its return address and activation); the
/// stack's hash is computed once the walk ends ([`hash_frames`], independent
/// per frame, so it runs at the multiplier's throughput rather than its
/// latency). Hashing inside the walk made each frame a chain of dependent
/// multiplies, and a release that took its frames from its acquisition's
/// paid that chain on every frame it copied.
pub(crate) struct StackBuf {
    inline: [MaybeUninit<usize>; INLINE_FRAMES],
    /// For each inline frame, the activation it returns into: the caller's
    /// stack pointer (eh_frame) or frame pointer (frame-pointer walk); 0
    /// where unknown. Lets a release reuse its acquisition's frames.
    ids: [MaybeUninit<usize>; INLINE_FRAMES],
    /// For each inline frame, the sum of [`hash_term`]s from it to the root
    /// (written by [`finish`](Self::finish)): kept with an acquisition's
    /// frames, it lets the release that takes them skip their terms.
    sums: [MaybeUninit<u64>; INLINE_FRAMES],
    len: usize,
    /// Frames past `INLINE_FRAMES`, when the limit allows that many.
    spill: Vec<usize>,
    omitted: u32,
    hash: u64,
    /// The acquisition's frames a release walk may end on (see [`Saved`]).
    splice: Option<Splice>,
    /// Frames taken from the acquisition's stack beyond those pushed.
    spliced_seen: usize,
    /// When frames were taken from an acquisition's, all of them: the sum
    /// of their [`hash_term`]s, and how many frames came before them.
    spliced_sum: Option<(u64, usize)>,
}

/// A release walk's progress through its acquisition's frames.
#[derive(Clone, Copy)]
struct Splice {
    saved: *const Saved,
    /// The first of the acquisition's frames whose activation is not below
    /// the release walk's last frame: activations lie at increasing
    /// addresses up both stacks, so this only moves up.
    cursor: usize,
    /// The acquisition's frame that the release walk's last frame matched
    /// (return address and activation), if it did.
    matched: Option<usize>,
}

impl StackBuf {
    pub(crate) fn new() -> StackBuf {
        StackBuf {
            // SAFETY: an array of `MaybeUninit` needs no initialization (the
            // idiom from `MaybeUninit`'s documentation; the array-repeat form
            // was compiled to a 768-byte memset per sampled event).
            inline: unsafe { MaybeUninit::<[MaybeUninit<usize>; INLINE_FRAMES]>::uninit().assume_init() },
            // SAFETY: as for `inline`.
            ids: unsafe { MaybeUninit::<[MaybeUninit<usize>; INLINE_FRAMES]>::uninit().assume_init() },
            // SAFETY: as for `inline`.
            sums: unsafe { MaybeUninit::<[MaybeUninit<u64>; INLINE_FRAMES]>::uninit().assume_init() },
            len: 0,
            spill: Vec::new(),
            omitted: 0,
            hash: 0,
            splice: None,
            spliced_seen: 0,
            spliced_sum: None,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
        self.spliced_seen = 0;
        self.spliced_sum = None;
        if let Some(s) = &mut self.splice {
            s.cursor = 0;
            s.matched = None;
        }
    }

    /// One frame of a walk: its return address and the activation it
    /// returns into (`id`, 0 if unknown). False when the walk may stop: the
    /// rest of the stack was taken from the acquisition's (see [`Saved`]).
    #[inline(always)]
    fn frame(&mut self, ip: usize, id: usize, limit: usize) -> bool {
        let i = self.len;
        if i < INLINE_FRAMES.min(limit) {
            self.inline[i].write(ip);
            self.ids[i].write(id);
            self.len = i + 1;
        } else if i == INLINE_FRAMES && self.kept() < limit {
            self.spill.push(ip);
        }
        match self.splice {
            None => true,
            Some(_) => !self.try_splice(ip, id, limit),
        }
    }

    /// True when this frame and the one before it are the acquisition's
    /// frames `k + 1` and `k` (same return addresses into the same
    /// activations), so that every frame above is the acquisition's too:
    /// they are appended.
    #[inline(never)]
    fn try_splice(&mut self, ip: usize, id: usize, limit: usize) -> bool {
        let Some(mut s) = self.splice else {
            return false;
        };
        if id == 0 {
            s.matched = None;
            self.splice = Some(s);
            return false;
        }
        // SAFETY: `splice` points to this thread's saved stack for the
        // duration of the walk (`capture_release` sets and clears it).
        let saved = unsafe { &*s.saved };
        let ids = &saved.ids[..saved.len];
        if let Some(k) = s.matched {
            if k + 1 < saved.len && saved.ips[k + 1] == ip && ids[k + 1] == id {
                let before = self.len;
                if self.append(&saved.ips[k + 2..saved.len], limit) {
                    let sum = saved
                        .sums
                        .get(k + 2)
                        .filter(|_| k + 2 < saved.len)
                        .copied()
                        .unwrap_or(0);
                    self.spliced_sum = Some((sum, before));
                }
                self.spliced_seen = saved.seen - (k + 2);
                let _ = SPLICED.try_with(|n| n.set(n.get() + 1));
                return true;
            }
        }
        while s.cursor < ids.len() && ids[s.cursor] < id {
            s.cursor += 1;
        }
        s.matched = (s.cursor < ids.len() && ids[s.cursor] == id).then_some(s.cursor);
        self.splice = Some(s);
        false
    }

    /// Appends frames taken from elsewhere, as far as `limit` allows (their
    /// activations unknown); true if all of them went inline.
    fn append(&mut self, ips: &[usize], limit: usize) -> bool {
        let take = ips.len().min(limit.saturating_sub(self.kept()));
        let ips = &ips[..take];
        let i = self.len;
        if self.spill.is_empty() && i + take <= INLINE_FRAMES {
            for (slot, &ip) in self.inline[i..i + take].iter_mut().zip(ips) {
                slot.write(ip);
            }
            for slot in &mut self.ids[i..i + take] {
                slot.write(0);
            }
            self.len = i + take;
            take == ips.len()
        } else {
            for &ip in ips {
                self.frame_unspliced(ip, limit);
            }
            false
        }
    }

    /// [`frame`](Self::frame) without the splice check, activation unknown.
    fn frame_unspliced(&mut self, ip: usize, limit: usize) {
        let splice = self.splice.take();
        self.frame(ip, 0, limit);
        self.splice = splice;
    }

    fn kept(&self) -> usize {
        self.len + self.spill.len()
    }

    fn finish(&mut self, seen: usize) {
        let seen = seen + std::mem::take(&mut self.spliced_seen);
        let kept = self.kept();
        self.omitted = (seen - kept) as u32;
        if !self.spill.is_empty() {
            // Rare (a limit above INLINE_FRAMES): keep the frames contiguous.
            let mut all = self.inline_ips().to_vec();
            all.append(&mut self.spill);
            self.len = 0;
            self.spill = all;
            self.hash = hash_frames(&self.spill, self.omitted);
            return;
        }
        // The terms from the root up (a spliced release: from the first
        // frame it walked itself), each frame's running sum kept for
        // `remember`.
        let n = self.len;
        let (mut sum, walked) = self.spliced_sum.take().unwrap_or((0, n));
        for (depth, i) in (n - walked..).zip((0..walked).rev()) {
            // SAFETY: the first `len` slots were written by `frame` or `append`.
            sum = sum.wrapping_add(hash_term(unsafe { self.inline[i].assume_init() }, depth));
            self.sums[i].write(sum);
        }
        self.hash = hash_end(sum, n, self.omitted);
    }

    fn inline_ips(&self) -> &[usize] {
        // SAFETY: the first `len` slots were written by `frame` or `append`.
        unsafe { std::slice::from_raw_parts(self.inline.as_ptr().cast::<usize>(), self.len) }
    }

    fn ips(&self) -> &[usize] {
        if self.spill.is_empty() {
            self.inline_ips()
        } else {
            &self.spill
        }
    }

    pub(crate) fn frames(&self) -> Frames<'_> {
        Frames {
            ips: self.ips(),
            omitted: self.omitted,
            hash: self.hash,
        }
    }

    pub(crate) fn to_stack(&self) -> Stack {
        self.frames().to_stack()
    }
}

/// A sampled acquisition's frames, kept on its thread until its release, so
/// that a release in the same function (the common `let g = m.lock(); …; }`)
/// walks only up to the frame where the two stacks meet and takes the rest
/// from here instead of walking it again. Two consecutive frames must match,
/// return address and activation (stack or frame pointer) both, before the
/// rest is taken.
pub(crate) struct Saved {
    key: u64,
    len: usize,
    /// Frames the acquisition's walk saw, kept and omitted.
    seen: usize,
    ips: [usize; INLINE_FRAMES],
    ids: [usize; INLINE_FRAMES],
    /// [`StackBuf::sums`] of the frames above.
    sums: [u64; INLINE_FRAMES],
}

thread_local! {
    /// Release walks on this thread that took the rest of their stack from
    /// the acquisition's; per thread, so that the sampled path makes no
    /// shared write for a figure only tests read.
    pub(crate) static SPLICED: Cell<u64> = const { Cell::new(0) };
}

/// Acquisitions remembered per thread: enough for locks nested a few deep.
const SAVED_SLOTS: usize = 4;

struct Recent {
    slots: [Saved; SAVED_SLOTS],
    next: usize,
}

thread_local! {
    /// Allocated by [`prepare_thread`], outside any user's lock.
    static RECENT: std::cell::RefCell<Option<Box<Recent>>> = const { std::cell::RefCell::new(None) };
}

/// Keeps `buf` (an acquisition's stack just captured) for its release;
/// returns the slot, to be keyed with [`key_remembered`] once the key is
/// known. Allocates nothing; does nothing before [`prepare_thread`].
pub(crate) fn remember(buf: &StackBuf) -> Option<usize> {
    if !buf.spill.is_empty() || buf.len == 0 {
        return None;
    }
    RECENT
        .try_with(|r| {
            let mut r = r.try_borrow_mut().ok()?;
            let r = r.as_mut()?;
            let i = r.next;
            r.next = (i + 1) % SAVED_SLOTS;
            let slot = &mut r.slots[i];
            slot.key = 0;
            slot.len = buf.len;
            slot.seen = buf.len + buf.omitted as usize;
            slot.ips[..buf.len].copy_from_slice(buf.inline_ips());
            // SAFETY: the first `len` ids were written with the frames.
            let ids = unsafe { std::slice::from_raw_parts(buf.ids.as_ptr().cast::<usize>(), buf.len) };
            slot.ids[..buf.len].copy_from_slice(ids);
            // SAFETY: `finish` wrote the first `len` sums (`spill` is empty).
            let sums = unsafe { std::slice::from_raw_parts(buf.sums.as_ptr().cast::<u64>(), buf.len) };
            slot.sums[..buf.len].copy_from_slice(sums);
            Some(i)
        })
        .ok()
        .flatten()
}

/// Keys a slot filled by [`remember`]; key 0 is never used.
pub(crate) fn key_remembered(slot: usize, key: u64) {
    let _ = RECENT.try_with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            if let Some(s) = r.as_mut().and_then(|r| r.slots.get_mut(slot)) {
                s.key = key;
            }
        }
    });
}

/// Captures a release's stack into `buf`, taking the frames it shares with
/// the acquisition keyed `key` from that acquisition's (see [`Saved`]).
#[inline(never)]
pub(crate) fn capture_release(max_frames: usize, buf: &mut StackBuf, key: u64) {
    let taken = RECENT
        .try_with(|r| {
            let Ok(mut r) = r.try_borrow_mut() else {
                return false;
            };
            let Some(r) = r.as_mut() else {
                return false;
            };
            let Some(saved) = r.slots.iter_mut().find(|s| s.key == key && key != 0) else {
                return false;
            };
            buf.splice = Some(Splice {
                saved: saved as *const Saved,
                cursor: 0,
                matched: None,
            });
            // The walk only reads `saved` through `buf.splice`.
            capture_into(max_frames, buf);
            buf.splice = None;
            saved.key = 0;
            true
        })
        .unwrap_or(false);
    if !taken {
        capture_into(max_frames, buf);
    }
}

/// A 64-bit hash of a stack, by which the recorder knows a stack it has seen
/// without the thread sending the frames again: the sum of one term per
/// frame ([`hash_term`]: a folded multiply of its address and its depth
/// counted from the root). The terms are independent, so their multiplies
/// overlap (a chain of dependent ones cost each frame the multiplier's
/// latency), and a release that takes its acquisition's upper frames takes
/// their terms' sum too, the depths from the root being the same. Every bit
/// of every address reaches every bit of its term, and the depth keeps a
/// reordered stack apart, so two distinct stacks of a program collide with
/// probability about 2^-64.
pub(crate) fn hash_frames(ips: &[usize], omitted: u32) -> u64 {
    let sum = ips
        .iter()
        .rev()
        .enumerate()
        .fold(0u64, |sum, (depth, &ip)| sum.wrapping_add(hash_term(ip, depth)));
    hash_end(sum, ips.len(), omitted)
}

/// One frame's part of [`hash_frames`]; `depth` counts from the root (0).
#[inline(always)]
fn hash_term(ip: usize, depth: usize) -> u64 {
    fold(ip as u64 ^ (depth as u64 + 1).wrapping_mul(HASH_P), HASH_K)
}

#[inline(always)]
fn hash_end(sum: u64, len: usize, omitted: u32) -> u64 {
    fold(sum.wrapping_add(HASH_SEED) ^ len as u64, HASH_L ^ omitted as u64)
}

const HASH_SEED: u64 = 0x243F_6A88_85A3_08D3;
const HASH_K: u64 = 0x9E37_79B9_7F4A_7C15;
const HASH_L: u64 = 0xD6E8_FEB8_6659_FD93;
/// Odd: the position keys `i * HASH_P` are distinct for every position.
const HASH_P: u64 = 0xA076_1D64_78BD_642F;

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let m = (a as u128).wrapping_mul(b as u128);
    (m as u64) ^ ((m >> 64) as u64)
}

/// Which unwinder captures stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Unwinder {
    /// Frame pointers when a calibration walk at start shows they work, else
    /// the eh_frame unwinder when its calibration walk works, else
    /// `backtrace`.
    #[default]
    Auto,
    /// Always frame pointers (falls back to `backtrace` on platforms without
    /// a frame-pointer walker). Needs `-C force-frame-pointers=yes`, or
    /// stacks come out short.
    FramePointers,
    /// Always the eh_frame unwinder: the program's own unwind tables
    /// (`.eh_frame`), read in process with each address's unwind rule cached
    /// per thread. Correct without frame pointers, and well under a
    /// microsecond for 30 frames once warm (`backtrace`: about 5 µs). x86_64
    /// Linux only; elsewhere this falls back to `backtrace`.
    EhFrame,
    /// Always `backtrace::trace`.
    Backtrace,
}

const ACTIVE_BACKTRACE: u8 = 0;
const ACTIVE_FP: u8 = 1;
const ACTIVE_EH_FRAME: u8 = 2;

/// The unwinder in use, decided by [`select`].
static ACTIVE: AtomicU8 = AtomicU8::new(ACTIVE_BACKTRACE);

/// Chooses the unwinder for the next session and returns it (never
/// [`Unwinder::Auto`]). Cold: runs at profiler start.
pub(super) fn select(unwinder: Unwinder) -> Unwinder {
    let chosen = match unwinder {
        Unwinder::Backtrace => Unwinder::Backtrace,
        Unwinder::FramePointers if fp::AVAILABLE => Unwinder::FramePointers,
        Unwinder::EhFrame if unwind::AVAILABLE && unwind::prepare() => Unwinder::EhFrame,
        Unwinder::FramePointers | Unwinder::EhFrame => Unwinder::Backtrace,
        Unwinder::Auto if fp::AVAILABLE && frame_pointers_agree_with_backtrace() => Unwinder::FramePointers,
        Unwinder::Auto if unwind::AVAILABLE && unwind::prepare() && eh_frame_agrees_with_backtrace() => {
            Unwinder::EhFrame
        }
        Unwinder::Auto => Unwinder::Backtrace,
    };
    let active = match chosen {
        Unwinder::FramePointers => ACTIVE_FP,
        Unwinder::EhFrame => ACTIVE_EH_FRAME,
        Unwinder::Auto | Unwinder::Backtrace => ACTIVE_BACKTRACE,
    };
    ACTIVE.store(active, Relaxed);
    chosen
}

/// Captures the current stack into `buf` (which the caller keeps on its own
/// stack), keeping at most `max_frames + INTERNAL_SLACK` addresses.
#[inline(never)]
pub(crate) fn capture_into(max_frames: usize, buf: &mut StackBuf) {
    let limit = max_frames.saturating_add(INTERNAL_SLACK);
    buf.clear();
    let walked = match ACTIVE.load(Relaxed) {
        ACTIVE_FP => fp::walk(limit, buf),
        ACTIVE_EH_FRAME => unwind::walk(limit, buf),
        _ => false,
    };
    if !walked {
        buf.clear();
        backtrace_into(limit, buf);
    }
}

/// Allocates what this thread's walks need (its stack bounds, the eh_frame
/// unwinder's rule cache) ahead of a walk that may run while a user's lock
/// is held, which a global allocator may take too.
pub(crate) fn prepare_thread() {
    #[cfg(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_os = "linux"))]
    let _ = fp::bounds();
    let _ = RECENT.try_with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            r.get_or_insert_with(|| {
                Box::new(Recent {
                    slots: std::array::from_fn(|_| Saved {
                        key: 0,
                        len: 0,
                        seen: 0,
                        ips: [0; INLINE_FRAMES],
                        ids: [0; INLINE_FRAMES],
                        sums: [0; INLINE_FRAMES],
                    }),
                    next: 0,
                })
            });
        }
    });
    if ACTIVE.load(Relaxed) == ACTIVE_EH_FRAME {
        unwind::prepare_thread();
    }
}

/// How many eh_frame walks ended early at a frame they could not unwind (a PC
/// in no loaded object, no unwind rule, a stack read outside the thread's
/// stack). The frames up to there are kept.
pub(crate) fn truncated_walks() -> u64 {
    unwind::truncated()
}

/// Captures the current stack into an owned [`Stack`].
#[cfg(feature = "tokio")]
pub(crate) fn capture(max_frames: usize) -> Stack {
    let mut buf = StackBuf::new();
    capture_into(max_frames, &mut buf);
    buf.to_stack()
}

#[inline(never)]
pub(crate) fn capture_with_backtrace(limit: usize) -> Stack {
    let mut buf = StackBuf::new();
    backtrace_into(limit, &mut buf);
    buf.to_stack()
}

#[inline(never)]
fn backtrace_into(limit: usize, buf: &mut StackBuf) {
    let mut seen = 0usize;
    backtrace::trace(|frame| {
        seen += 1;
        // No activation known: never spliced.
        buf.frame(frame.ip() as usize, 0, limit);
        seen < MAX_COUNTED
    });
    buf.finish(seen);
}

/// The calibration: walk the same stack both ways from a known call chain and
/// check that the frame-pointer frames are the ones `backtrace` finds.
fn frame_pointers_agree_with_backtrace() -> bool {
    let (fp_stack, bt_stack) = calibration_a(walk_frame_pointers);
    fp_matches_backtrace(&fp_stack, &bt_stack, 3)
}

/// The same calibration for the eh_frame unwinder.
fn eh_frame_agrees_with_backtrace() -> bool {
    let (eh_stack, bt_stack) = calibration_a(walk_eh_frame);
    fp_matches_backtrace(&eh_stack, &bt_stack, 3)
}

type Walk = fn(usize) -> Option<Stack>;

/// True when `fp` and `bt`, captured in the same function, agree on `want`
/// consecutive callers. The leaf frames differ (each unwinder has its own
/// internals and call site), so the comparison starts at the first of the
/// first three frame-pointer frames that `bt` also has among its first
/// [`LEAF_FRAMES`]: a walk that skipped the caller's frames and found only
/// frames far up the stack (the standard library keeps frame pointers even in
/// a build that omits them) does not agree.
pub(crate) fn fp_matches_backtrace(fp: &[usize], bt: &[usize], want: usize) -> bool {
    let common = fp
        .iter()
        .take(3)
        .enumerate()
        .find_map(|(i, ip)| bt.iter().take(LEAF_FRAMES).position(|b| b == ip).map(|j| (i, j)));
    let Some((i, j)) = common else {
        return false;
    };
    fp.len() >= i + want && bt.len() >= j + want && fp[i..i + want] == bt[j..j + want]
}

/// Frames of `backtrace`'s own at the leaf of its walk, at most.
const LEAF_FRAMES: usize = 12;

#[inline(never)]
fn calibration_a(walk: Walk) -> (Vec<usize>, Vec<usize>) {
    let r = calibration_b(walk);
    std::hint::black_box(r)
}

#[inline(never)]
fn calibration_b(walk: Walk) -> (Vec<usize>, Vec<usize>) {
    let r = calibration_c(walk);
    std::hint::black_box(r)
}

#[inline(never)]
fn calibration_c(walk: Walk) -> (Vec<usize>, Vec<usize>) {
    let fp = walk(32).map(|s| s.ips.to_vec()).unwrap_or_default();
    let bt = capture_with_backtrace(64).ips.to_vec();
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

    /// This thread's stack, `(lowest, highest)` address.
    pub(super) fn bounds() -> Option<(usize, usize)> {
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

    /// Walks the frame-pointer chain into `buf`; false if this thread's
    /// stack bounds are unknown (then nothing was written).
    #[inline(never)]
    pub(super) fn walk(limit: usize, buf: &mut StackBuf) -> bool {
        let Some((lo, hi)) = bounds() else {
            return false;
        };
        let mut seen = 0usize;
        let mut fp = frame_pointer();
        while seen < MAX_COUNTED {
            if fp < lo || fp % std::mem::align_of::<usize>() != 0 || fp > hi - 16 {
                break;
            }
            // SAFETY: `fp` is aligned and at least 16 bytes below the top of
            // this thread's stack, so both words are inside mapped stack.
            let (next, ret) = unsafe {
                let p = fp as *const usize;
                (p.read(), p.add(1).read())
            };
            if ret == 0 {
                break;
            }
            seen += 1;
            // `next` is the frame of the function `ret` returns into.
            if !buf.frame(ret, next, limit) {
                break;
            }
            // The chain must go up the stack, or it is not a chain.
            if next <= fp {
                break;
            }
            fp = next;
        }
        buf.finish(seen);
        true
    }
}

#[cfg(not(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_os = "linux")))]
mod fp {
    use super::*;

    pub(super) const AVAILABLE: bool = false;

    pub(super) fn walk(_limit: usize, _buf: &mut StackBuf) -> bool {
        false
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod unwind {
    use super::*;

    pub(super) const AVAILABLE: bool = false;

    pub(super) fn prepare() -> bool {
        false
    }

    pub(super) fn walk(_limit: usize, _buf: &mut StackBuf) -> bool {
        false
    }

    pub(super) fn prepare_thread() {}

    pub(super) fn truncated() -> u64 {
        0
    }
}

/// A frame-pointer walk whatever the selected unwinder, for the calibration
/// and tests.
#[inline(never)]
pub(crate) fn walk_frame_pointers(limit: usize) -> Option<Stack> {
    let mut buf = StackBuf::new();
    fp::walk(limit, &mut buf).then(|| buf.to_stack())
}

/// Makes the eh_frame unwinder's module list now (it is otherwise made at
/// profiler start, or at a thread's first walk, which meanwhile falls back to
/// `backtrace`); false where that unwinder is not available.
pub(crate) fn prepare_eh_frame() -> bool {
    unwind::AVAILABLE && unwind::prepare()
}

/// An eh_frame walk whatever the selected unwinder, for the calibration and
/// tests; `None` where that unwinder is not available.
#[inline(never)]
pub(crate) fn walk_eh_frame(limit: usize) -> Option<Stack> {
    let mut buf = StackBuf::new();
    unwind::walk(limit, &mut buf).then(|| buf.to_stack())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Both = (Option<Vec<usize>>, Vec<usize>);

    #[inline(never)]
    fn deep(n: usize, walk: Walk) -> Both {
        if n == 0 {
            let ours = walk(64).map(|s| s.ips.to_vec());
            let bt = capture_with_backtrace(80).ips.to_vec();
            return (ours, bt);
        }
        let r = deep(n - 1, walk);
        std::hint::black_box(r)
    }

    /// Whether `walk` finds the 31 callers of a 30-deep recursion exactly as
    /// `backtrace` does.
    fn agrees_on_a_deep_stack(walk: Walk) -> bool {
        match deep(30, walk) {
            (Some(ours), bt) => ours.len() >= 31 && fp_matches_backtrace(&ours, &bt, 31),
            (None, _) => false,
        }
    }

    #[test]
    fn calibration_accepts_frame_pointers_exactly_when_they_work() {
        // With `-C force-frame-pointers=yes` both are true; in a plain build
        // the chain breaks at the first function that uses rbp for data, and
        // both are false.
        assert_eq!(
            frame_pointers_agree_with_backtrace(),
            agrees_on_a_deep_stack(walk_frame_pointers),
            "{:x?}",
            deep(30, walk_frame_pointers)
        );
    }

    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn eh_frame_walk_finds_the_same_frames_as_backtrace_in_every_build() {
        assert!(unwind::prepare());
        let (ours, bt) = deep(30, walk_eh_frame);
        let ours = ours.expect("the eh_frame unwinder runs on this thread");
        assert!(ours.len() >= 31, "eh_frame walk found only {} frames", ours.len());
        assert!(
            fp_matches_backtrace(&ours, &bt, 31),
            "eh_frame: {ours:x?}\nbacktrace: {bt:x?}"
        );
        assert!(eh_frame_agrees_with_backtrace());
    }

    #[test]
    fn auto_chooses_an_unwinder_that_agrees_with_backtrace() {
        let walk: Walk = match select(Unwinder::Auto) {
            Unwinder::FramePointers => walk_frame_pointers,
            Unwinder::EhFrame => walk_eh_frame,
            _ => return,
        };
        assert!(agrees_on_a_deep_stack(walk));
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        assert_ne!(select(Unwinder::Auto), Unwinder::Backtrace);
    }

    /// An acquisition's stack, remembered under `key` as a sampled one is.
    #[inline(never)]
    fn acquire_here(key: u64) -> Vec<usize> {
        prepare_thread();
        let mut b = StackBuf::new();
        capture_into(64, &mut b);
        let slot = remember(&b).expect("remembered");
        key_remembered(slot, key);
        std::hint::black_box(b.inline_ips().to_vec())
    }

    /// The release's stack taken with the acquisition's frames, and a full
    /// walk from the same function.
    #[inline(never)]
    fn release_here(key: u64) -> (Vec<usize>, u32, Vec<usize>, u32) {
        let mut spliced = StackBuf::new();
        capture_release(64, &mut spliced, key);
        let mut full = StackBuf::new();
        capture_into(64, &mut full);
        // The sum of terms taken with the frames is theirs.
        for (what, b) in [("spliced", &spliced), ("full", &full)] {
            assert_eq!(b.hash, hash_frames(b.ips(), b.omitted), "{what} walk's hash");
        }
        let r = (
            spliced.ips().to_vec(),
            spliced.omitted,
            full.ips().to_vec(),
            full.omitted,
        );
        std::hint::black_box(r)
    }

    #[inline(never)]
    fn take(key: u64, depth: usize) -> Vec<usize> {
        if depth == 0 {
            return acquire_here(key);
        }
        std::hint::black_box(take(key, depth - 1))
    }

    #[inline(never)]
    fn give(key: u64, depth: usize) -> (Vec<usize>, u32, Vec<usize>, u32) {
        if depth == 0 {
            return release_here(key);
        }
        std::hint::black_box(give(key, depth - 1))
    }

    fn same_above_the_leaf(case: &str, (spliced, so, full, fo): (Vec<usize>, u32, Vec<usize>, u32)) {
        // Up to `release_here` the two captures went through different
        // internal frames and call sites; from the return into its caller
        // up, every frame must be the same.
        assert!(
            full.len() > 3 && spliced.ends_with(&full[2..]),
            "{case}: spliced {spliced:x?}\nfull {full:x?}"
        );
        assert_eq!(so, fo, "{case}: omitted frames");
    }

    #[test]
    fn reordered_shortened_and_truncated_stacks_hash_apart() {
        let stack = [0x5555_0000_1000usize, 0x5555_0000_2000, 0x5555_0000_3000];
        let others: [&[usize]; 4] = [
            &[0x5555_0000_2000, 0x5555_0000_1000, 0x5555_0000_3000],
            &[0x5555_0000_1000, 0x5555_0000_2000],
            &[0x5555_0000_2000, 0x5555_0000_3000],
            &[
                0x5555_0000_1000,
                0x5555_0000_2000,
                0x5555_0000_3000,
                0x5555_0000_3000,
            ],
        ];
        let h = hash_frames(&stack, 0);
        for other in others {
            assert_ne!(h, hash_frames(other, 0), "{other:x?}");
        }
        assert_ne!(h, hash_frames(&stack, 1), "the same frames with one omitted");
    }

    #[test]
    fn a_release_takes_its_acquisitions_frames_and_gets_the_stack_a_full_walk_gets() {
        if select(Unwinder::Auto) == Unwinder::Backtrace {
            return;
        }
        let before = SPLICED.with(Cell::get);
        // Released in the function that acquired.
        let k = 11;
        let _ = acquire_here(k);
        same_above_the_leaf("same function", release_here(k));
        // Acquired 30 frames down, released 30 frames down another way.
        let k = 12;
        let _ = take(k, 30);
        same_above_the_leaf("returned and passed down again", give(k, 30));
        // Acquired deeper than released.
        let k = 13;
        let _ = take(k, 5);
        same_above_the_leaf("released higher up", give(k, 0));
        assert!(
            SPLICED.with(Cell::get) >= before + 3,
            "no release walk was shortened"
        );
    }
}
