//! Stack capture on the sampled path: return addresses only, symbolized later
//! on the profiler's thread.
//!
//! Three unwinders, in the order [`Unwinder::Auto`] tries them:
//! - frame-pointer walking, used when the program is built with
//!   `-C force-frame-pointers=yes` and a calibration walk at profiler start
//!   agrees with `backtrace::trace`; a walk from where a kept stack began
//!   checks the words that walk read instead of walking ([`Saved`]);
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
    /// The frame pointer a frame-pointer walk began at (0 for the other
    /// unwinders): with `ends_on_zero`, what a later walk needs to know it
    /// would find these same frames (see [`Saved::verify`]).
    start: usize,
    /// The walk ended on a zero return address (not on a bound or a chain
    /// that turned down), which a check of the same frames must read too.
    ends_on_zero: bool,
    /// A release walk that took an acquisition's frames: its slot, that
    /// slot's generation, and how many frames the walk found itself.
    took: Option<(*const Saved, u64, usize)>,
    /// A walk found this thread's remembered stack (see [`Saved`]) instead
    /// of walking: the frames are that slot's, which lives in this thread's
    /// [`Recent`] and is not written while this buffer is in use.
    cached: *const Saved,
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
            start: 0,
            ends_on_zero: false,
            took: None,
            cached: std::ptr::null(),
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
        self.spliced_seen = 0;
        self.spliced_sum = None;
        self.start = 0;
        self.ends_on_zero = false;
        self.took = None;
        self.cached = std::ptr::null();
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
        let n = saved.len;
        if let Some(k) = s.matched {
            if k + 1 < n && saved.ips[k + 1] == ip && saved.id(k + 1) == id {
                // With frame pointers, the frames above are checked against
                // what a walk would read (the same activation may have been
                // left and entered again since): taken only if they hold.
                // SAFETY: both walks are this thread's frame-pointer walks
                // and this one met frame `k + 1`.
                if self.start != 0 && saved.start != 0 && !unsafe { saved.verify_above(k + 2) } {
                    self.splice = None;
                    return false;
                }
                let before = self.len;
                // The rest of the stack is the acquisition's, to its end.
                self.ends_on_zero = saved.ends_on_zero;
                self.took = Some((s.saved, saved.generation, before));
                if saved.start == 0 {
                    // Frames of another unwinder: never checked against memory.
                    self.start = 0;
                }
                if self.append(
                    &saved.ips[k + 2..n],
                    &saved.words[k + 2..n],
                    &saved.sums[k + 2..n],
                    limit,
                ) {
                    let sum = saved.sums.get(k + 2).filter(|_| k + 2 < n).copied().unwrap_or(0);
                    self.spliced_sum = Some((sum, before));
                }
                self.spliced_seen = saved.seen - (k + 2);
                let _ = SPLICED.try_with(|n| n.set(n.get() + 1));
                return true;
            }
        }
        while s.cursor < n && saved.id(s.cursor) < id {
            s.cursor += 1;
        }
        s.matched = (s.cursor < n && saved.id(s.cursor) == id).then_some(s.cursor);
        self.splice = Some(s);
        false
    }

    /// Appends an acquisition's frames, their activations and their sums of
    /// terms, as far as `limit` allows; true if all of them went inline.
    fn append(&mut self, ips: &[usize], words: &[[usize; 2]], sums: &[u64], limit: usize) -> bool {
        let take = ips.len().min(limit.saturating_sub(self.kept()));
        let ips = &ips[..take];
        let i = self.len;
        if self.spill.is_empty() && i + take <= INLINE_FRAMES {
            for (slot, &ip) in self.inline[i..i + take].iter_mut().zip(ips) {
                slot.write(ip);
            }
            for (slot, w) in self.ids[i..i + take].iter_mut().zip(words) {
                slot.write(w[0]);
            }
            for (slot, &sum) in self.sums[i..i + take].iter_mut().zip(sums) {
                slot.write(sum);
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
        if !self.cached.is_null() {
            // SAFETY: `cached` points to a slot of this thread's `Recent`
            // (a box that lives as long as the thread), set by the walk that
            // found it; slots are written only by `remember` and
            // `capture_release`, never while a buffer that points to one is
            // read (see `cached`).
            let saved = unsafe { &*self.cached };
            return Frames {
                ips: &saved.ips[..saved.len],
                omitted: 0,
                hash: saved.hash,
            };
        }
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

/// A stack captured on this thread, kept in a slot of its [`Recent`]:
/// - a sampled acquisition's frames, kept until its release (`Recent::keys`), so that
///   a release in the same function (the common `let g = m.lock(); …; }`)
///   walks only up to the frame where the two stacks meet and takes the rest
///   from here instead of walking it again. Two consecutive frames must
///   match, return address and activation (stack or frame pointer) both,
///   before the rest is taken; with frame pointers the rest is also checked
///   against the words a walk would read ([`Saved::verify_above`]), so the
///   frames taken are exactly the ones a walk finds;
/// - with frame pointers, every stack with the words its walk read
///   (`start` and `words`), so that a later walk from the same frame pointer
///   checks those words at once instead of walking ([`Saved::verify`]): a
///   lock taken again and again from one place, as servers do, pays the
///   walk once.
#[derive(Clone)]
pub(crate) struct Saved {
    len: usize,
    /// Frames the acquisition's walk saw, kept and omitted.
    seen: usize,
    /// The frame pointer a frame-pointer walk began at; 0 for the other
    /// unwinders.
    start: usize,
    /// The walk ended on a zero return address.
    ends_on_zero: bool,
    /// Changes whenever the slot is filled: what a release's slot checks
    /// that its acquisition's frames are still the ones it took.
    generation: u64,
    /// For a release that took an acquisition's frames: that acquisition's
    /// slot and generation, and how many frames the release walked itself.
    took: Option<(usize, u64, usize)>,
    /// [`hash_frames`] of the frames.
    hash: u64,
    ips: [usize; INLINE_FRAMES],
    /// For each frame, the two words a frame-pointer walk read at its frame
    /// pointer, in their order in memory: the caller's frame pointer (the
    /// activation the frame returns into; for the other unwinders, what
    /// [`StackBuf::ids`] holds) and the return address.
    words: [[usize; 2]; INLINE_FRAMES],
    /// [`StackBuf::sums`] of the frames above.
    sums: [u64; INLINE_FRAMES],
}

impl Saved {
    const EMPTY: Saved = Saved {
        len: 0,
        seen: 0,
        start: 0,
        ends_on_zero: false,
        generation: 0,
        took: None,
        hash: 0,
        ips: [0; INLINE_FRAMES],
        words: [[0; 2]; INLINE_FRAMES],
        sums: [0; INLINE_FRAMES],
    };

    /// The activation frame `i` returns into.
    #[inline(always)]
    fn id(&self, i: usize) -> usize {
        self.words[i][0]
    }

    /// Whether a frame-pointer walk from `start` would find the first
    /// `frames` of these frames now (and, with `end`, stop after them as it
    /// did). That walk reads two words at each frame pointer of the chain,
    /// the next frame pointer and the return address, and stops where the
    /// words it read tell it to; so if every word it read then holds the
    /// same value now, it finds the same frames. The check reads the same
    /// words, at addresses known in advance, all at once: a walk must read
    /// them one after another, each address being the word read before.
    ///
    /// # Safety
    /// The slot was filled on this thread from frame-pointer walks (or a
    /// release walk that took an acquisition's frames) that began at
    /// `start`, and the caller's current frame pointer is `start`: every
    /// address read was inside this thread's stack for those walks, at or
    /// above `start`, so it is inside the live part of it now.
    #[inline]
    unsafe fn verify(&self, frames: usize, end: bool) -> bool {
        // SAFETY: this function's contract.
        unsafe { self.verify_from(self.start, 0..frames.min(self.len), end) }
    }

    /// Whether the walk that found frame `i - 1` (a release walk that met
    /// this acquisition's frame `i - 1`) would go on to find frames `i..`
    /// exactly as kept: the check [`verify`](Self::verify) makes, from that
    /// frame's activation. Makes taking an acquisition's frames exact with
    /// frame pointers.
    ///
    /// # Safety
    /// As [`verify`](Self::verify), and the caller's walk met frame
    /// `i - 1` (same return address and activation): the addresses read are
    /// at or above that activation.
    unsafe fn verify_above(&self, i: usize) -> bool {
        // SAFETY: this function's contract.
        unsafe { self.verify_from(self.id(i - 1), i..self.len, true) }
    }

    /// # Safety
    /// As [`verify`](Self::verify), from the activation `at` of the frame
    /// before `frames`.
    #[inline]
    unsafe fn verify_from(&self, at: usize, frames: std::ops::Range<usize>, end: bool) -> bool {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: this function's contract.
        return unsafe { self.verify_from_sse2(at, frames, end) };
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: this function's contract.
        return unsafe { self.verify_from_words(at, frames, end) };
    }

    /// [`verify_from`](Self::verify_from) a frame at a time: one 16-byte
    /// load of the two words the walk read, compared with the kept pair,
    /// where word by word took four loads a frame (the check is bound by
    /// its loads).
    ///
    /// # Safety
    /// As [`verify_from`](Self::verify_from).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn verify_from_sse2(&self, mut at: usize, frames: std::ops::Range<usize>, end: bool) -> bool {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_setzero_si128,
            _mm_xor_si128,
        };
        let words = &self.words[frames];
        // SAFETY: SSE2 is part of x86-64. Each stack load reads the two
        // words the walk read at `at` (this function's contract); `w` is a
        // kept pair of two words.
        unsafe {
            let mut differs = _mm_setzero_si128();
            for w in words {
                let read = _mm_loadu_si128(at as *const __m128i);
                let kept = _mm_loadu_si128(w.as_ptr().cast::<__m128i>());
                differs = _mm_or_si128(differs, _mm_xor_si128(read, kept));
                at = w[0];
            }
            if end && self.ends_on_zero && (at as *const usize).add(1).read() != 0 {
                return false;
            }
            _mm_movemask_epi8(_mm_cmpeq_epi8(differs, _mm_setzero_si128())) == 0xFFFF
        }
    }

    /// [`verify_from`](Self::verify_from) word by word.
    ///
    /// # Safety
    /// As [`verify_from`](Self::verify_from).
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    #[inline]
    unsafe fn verify_from_words(&self, mut at: usize, frames: std::ops::Range<usize>, end: bool) -> bool {
        let words = &self.words[frames];
        let mut differs = [0usize; 2];
        for w in words {
            let p = at as *const [usize; 2];
            // SAFETY: this function's contract.
            let read = unsafe { p.read_unaligned() };
            // Two accumulators: one OR per frame on the dependency chain.
            differs[0] |= read[0] ^ w[0];
            differs[1] |= read[1] ^ w[1];
            at = w[0];
        }
        if end && self.ends_on_zero {
            // SAFETY: as above: the walk read this word too.
            differs[0] |= unsafe { (at as *const usize).add(1).read() };
        }
        differs[0] | differs[1] == 0
    }
}

thread_local! {
    /// Release walks on this thread that took the rest of their stack from
    /// the acquisition's; per thread, so that the sampled path makes no
    /// shared write for a figure only tests read.
    pub(crate) static SPLICED: Cell<u64> = const { Cell::new(0) };
}

#[cfg(test)]
thread_local! {
    /// Walks on this thread that a check replaced, checks that failed, and
    /// releases found with a check of the frames they walked themselves.
    static CHECKED: Cell<(u64, u64, u64)> = const { Cell::new((0, 0, 0)) };
}

/// Stacks kept per thread: enough for locks nested a few deep, with their
/// releases.
const SAVED_SLOTS: usize = 8;

/// This thread's kept stacks (see [`Saved`]).
pub(crate) struct Recent {
    /// Each slot's `start` where a check can tell that a walk from there
    /// finds its frames again (the walk saw the whole stack), else 0, side
    /// by side for the lookup.
    starts: [usize; SAVED_SLOTS],
    /// The acquisition each slot is kept for (its ticket's key), 0 for none.
    keys: [u64; SAVED_SLOTS],
    slots: [Saved; SAVED_SLOTS],
    /// When each slot was last filled or found (a count of those events).
    used: [Cell<u64>; SAVED_SLOTS],
    uses: Cell<u64>,
    generations: u64,
}

impl Recent {
    /// Out of line: the value is built on the stack before it is boxed, and
    /// a frame that large is probed page by page on every call.
    #[cold]
    #[inline(never)]
    fn boxed() -> Box<Recent> {
        Box::new(Recent {
            starts: [0; SAVED_SLOTS],
            keys: [0; SAVED_SLOTS],
            slots: std::array::from_fn(|_| Saved::EMPTY),
            used: Default::default(),
            uses: Cell::new(0),
            generations: 0,
        })
    }

    /// A slot whose frames a frame-pointer walk from `start` (the caller's
    /// current frame pointer) with `limit` would find now; `acquired`: the
    /// slot of the acquisition a release walk would take frames from.
    ///
    /// A release kept with the acquisition frames it took is checked only
    /// as far as it walked itself when that acquisition's slot still holds
    /// those frames: its walk would take the same ones again.
    #[inline]
    fn find(&self, start: usize, limit: usize, acquired: Option<usize>) -> Option<&Saved> {
        // The slots kept from this place, the one found last first: a slot
        // left from other frames at the same place (another caller at the
        // same depth) would otherwise be checked, and fail, every time
        // before the one in use.
        let mut last: Option<usize> = None;
        let mut others = false;
        for i in (0..SAVED_SLOTS).filter(|&i| self.starts[i] == start) {
            match last {
                Some(l) if self.used[l].get() >= self.used[i].get() => others = true,
                Some(_) => {
                    others = true;
                    last = Some(i);
                }
                None => last = Some(i),
            }
        }
        let last = last?;
        if self.check(last, limit, acquired) {
            return Some(&self.slots[last]);
        }
        if others {
            for i in (0..SAVED_SLOTS).filter(|&i| i != last && self.starts[i] == start) {
                if self.check(i, limit, acquired) {
                    return Some(&self.slots[i]);
                }
            }
        }
        None
    }

    /// Whether slot `i` holds what a walk from its `start` (the caller's
    /// frame pointer) would find now (see [`find`](Self::find)); marks it
    /// found last if so.
    #[inline]
    fn check(&self, i: usize, limit: usize, acquired: Option<usize>) -> bool {
        let saved = &self.slots[i];
        let walked = match saved.took {
            Some((slot, generation, walked))
                if acquired == Some(slot) && self.slots[slot].generation == generation =>
            {
                Some(walked)
            }
            _ => None,
        };
        // SAFETY: a slot's `start` is set only from a frame-pointer walk on
        // this thread that began there, and the caller is at it now.
        let same = saved.len <= limit
            && unsafe {
                match walked {
                    Some(walked) => saved.verify(walked, false),
                    None => saved.verify(saved.len, true),
                }
            };
        #[cfg(test)]
        CHECKED.with(|c| {
            let (hits, misses, partial) = c.get();
            c.set(match (same, walked) {
                (true, Some(_)) => (hits + 1, misses, partial + 1),
                (true, None) => (hits + 1, misses, partial),
                (false, _) => (hits, misses + 1, partial),
            })
        });
        if same {
            self.touch(i);
        }
        same
    }

    /// Marks slot `i` as the most recently used.
    fn touch(&self, i: usize) {
        let now = self.uses.get() + 1;
        self.uses.set(now);
        self.used[i].set(now);
    }

    /// The slot to fill next: the least recently used that no acquisition
    /// keeps, if any.
    fn victim(&mut self) -> usize {
        let by_use = |i: &usize| self.used[*i].get();
        (0..SAVED_SLOTS)
            .filter(|&i| self.keys[i] == 0)
            .min_by_key(by_use)
            .or_else(|| (0..SAVED_SLOTS).min_by_key(by_use))
            .unwrap_or(0)
    }

    /// Keeps `buf`'s frames (walked, not found here) in a slot.
    fn store(&mut self, buf: &StackBuf) -> Option<usize> {
        if !buf.spill.is_empty() || buf.len == 0 || !buf.cached.is_null() {
            return None;
        }
        let took = buf.took.and_then(|(from, generation, walked)| {
            let slot = self.slots.iter().position(|s| std::ptr::eq(s, from))?;
            Some((slot, generation, walked))
        });
        let i = self.victim();
        self.generations += 1;
        let slot = &mut self.slots[i];
        self.keys[i] = 0;
        slot.len = buf.len;
        slot.seen = buf.len + buf.omitted as usize;
        slot.start = buf.start;
        slot.ends_on_zero = buf.ends_on_zero;
        slot.generation = self.generations;
        slot.took = took.filter(|&(from, _, _)| from != i);
        slot.hash = buf.hash;
        let ips = buf.inline_ips();
        slot.ips[..buf.len].copy_from_slice(ips);
        // SAFETY: the first `len` ids were written with the frames.
        let ids = unsafe { std::slice::from_raw_parts(buf.ids.as_ptr().cast::<usize>(), buf.len) };
        for ((w, &id), &ip) in slot.words.iter_mut().zip(ids).zip(ips) {
            *w = [id, ip];
        }
        // SAFETY: `finish` (or `append`) wrote the first `len` sums (`spill`
        // is empty).
        let sums = unsafe { std::slice::from_raw_parts(buf.sums.as_ptr().cast::<u64>(), buf.len) };
        slot.sums[..buf.len].copy_from_slice(sums);
        // Found again only if the walk saw the whole stack: one cut at the
        // limit read no further than it kept.
        self.starts[i] = if buf.omitted == 0 { slot.start } else { 0 };
        self.touch(i);
        Some(i)
    }

    /// Copies slot `from` into another, for an acquisition found in a slot
    /// that another acquisition keeps (locks nested at one place).
    fn copy(&mut self, from: usize) -> usize {
        let to = self.victim();
        if to != from {
            self.generations += 1;
            self.slots[to] = self.slots[from].clone();
            self.keys[to] = 0;
            self.slots[to].generation = self.generations;
            self.starts[to] = self.starts[from];
            self.touch(to);
        }
        to
    }
}

thread_local! {
    /// Allocated by [`prepare_thread`], outside any user's lock.
    static RECENT: std::cell::RefCell<Option<Box<Recent>>> = const { std::cell::RefCell::new(None) };
}

/// Keeps `buf` (an acquisition's stack just captured) for its release,
/// under the key `key` returns (called once the slot is chosen, so that
/// the caller can time the hold from there). Allocates nothing; does
/// nothing, and does not call `key`, before [`prepare_thread`] or when no
/// slot is free.
pub(crate) fn remember(buf: &StackBuf, key: impl FnOnce() -> u64) {
    let _ = RECENT.try_with(|r| {
        let Ok(mut r) = r.try_borrow_mut() else {
            return;
        };
        let Some(r) = r.as_mut() else {
            return;
        };
        let slot = if buf.cached.is_null() {
            r.store(buf)
        } else {
            // Found here: the slot itself is kept, unless another
            // acquisition of the same stack keeps it already (nested).
            r.slots
                .iter()
                .position(|s| std::ptr::eq(s, buf.cached))
                .map(|i| match r.keys[i] {
                    0 => i,
                    _ => r.copy(i),
                })
        };
        if let Some(slot) = slot {
            // Key 0 is never used.
            r.keys[slot] = key();
        }
    });
}

/// Captures a release's stack into `buf`: found among this thread's kept
/// stacks, or walked, taking the frames it shares with the acquisition keyed
/// `key` from that acquisition's (see [`Saved`]); kept for the next release
/// from the same place.
#[inline(never)]
pub(crate) fn capture_release(max_frames: usize, buf: &mut StackBuf, key: u64) {
    let limit = max_frames.saturating_add(INTERNAL_SLACK);
    let taken = RECENT
        .try_with(|r| {
            let Ok(mut r) = r.try_borrow_mut() else {
                return false;
            };
            let Some(r) = r.as_mut() else {
                return false;
            };
            let acquired = r.keys.iter().position(|&k| k == key && key != 0);
            buf.splice = acquired.map(|i| Splice {
                saved: &r.slots[i] as *const Saved,
                cursor: 0,
                matched: None,
            });
            // The walk only reads the acquisition's slot, through
            // `buf.splice`.
            walk_into(limit, buf, Some((r, acquired)));
            buf.splice = None;
            if let Some(i) = acquired {
                r.keys[i] = 0;
            }
            if buf.start != 0 && buf.omitted == 0 {
                // Kept only where a later release from here can find it.
                r.store(buf);
            }
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
    // The kept stacks are looked up here, not inside a closure around the
    // walk: frames between the user's and the walk's count against the
    // slack for the profiler's own (an unoptimized build has many).
    let recent = (ACTIVE.load(Relaxed) == ACTIVE_FP)
        .then(|| RECENT.try_with(|r| r.try_borrow().ok()?.as_deref().map(|r| r as *const Recent)))
        .and_then(|r| r.ok().flatten());
    // SAFETY: the box this points into lives as long as the thread, and
    // nothing writes it during the walk: it was not mutably borrowed, and
    // only this thread's `remember` and `capture_release`, which the walk
    // does not call, borrow it so.
    let recent = recent.map(|r| unsafe { &*r });
    walk_into(limit, buf, recent.map(|r| (r, None)));
}

/// Walks with the selected unwinder (a frame-pointer walk first looks for
/// its stack in `recent`, with the slot of the acquisition a release takes
/// frames from), or `backtrace` if it cannot.
#[inline(always)]
fn walk_into(limit: usize, buf: &mut StackBuf, recent: Option<(&Recent, Option<usize>)>) {
    buf.clear();
    let walked = match ACTIVE.load(Relaxed) {
        ACTIVE_FP => fp::walk(limit, buf, recent),
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
            if r.is_none() {
                *r = Some(Recent::boxed());
            }
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
    pub(super) fn walk(limit: usize, buf: &mut StackBuf, recent: Option<(&Recent, Option<usize>)>) -> bool {
        let start = frame_pointer();
        if let Some(saved) = recent.and_then(|(r, acquired)| r.find(start, limit, acquired)) {
            buf.cached = saved;
            return true;
        }
        let Some(bounds) = bounds() else {
            return false;
        };
        // SAFETY: `start` is this function's frame pointer, inside this
        // thread's stack, whose bounds these are.
        unsafe { walk_from(start, bounds, limit, buf) };
        true
    }

    /// Walks the frame-pointer chain from `start` into `buf`, reading only
    /// inside `(lo, hi)`.
    ///
    /// # Safety
    /// `lo..hi` is mapped, readable memory for the whole walk (the current
    /// thread's stack, from `start` up).
    #[inline(always)]
    pub(super) unsafe fn walk_from(start: usize, (lo, hi): (usize, usize), limit: usize, buf: &mut StackBuf) {
        buf.start = start;
        let mut seen = 0usize;
        let mut fp = start;
        while seen < MAX_COUNTED {
            if fp < lo || fp % std::mem::align_of::<usize>() != 0 || fp > hi - 16 {
                break;
            }
            // SAFETY: `fp` is aligned and at least 16 bytes below `hi`, so
            // both words are inside `lo..hi` (this function's contract).
            let (next, ret) = unsafe {
                let p = fp as *const usize;
                (p.read(), p.add(1).read())
            };
            if ret == 0 {
                buf.ends_on_zero = true;
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
    }
}

#[cfg(not(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_os = "linux")))]
mod fp {
    use super::*;

    pub(super) const AVAILABLE: bool = false;

    pub(super) fn walk(
        _limit: usize,
        _buf: &mut StackBuf,
        _recent: Option<(&Recent, Option<usize>)>,
    ) -> bool {
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
    fp::walk(limit, &mut buf, None).then(|| buf.to_stack())
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
        let mut kept = false;
        remember(&b, || {
            kept = true;
            key
        });
        assert!(kept, "remembered");
        std::hint::black_box(b.frames().ips.to_vec())
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
        let (spliced, full) = (spliced.frames(), full.frames());
        for (what, f) in [("spliced", spliced), ("full", full)] {
            assert_eq!(f.hash, hash_frames(f.ips, f.omitted), "{what} walk's hash");
        }
        let r = (
            spliced.ips.to_vec(),
            spliced.omitted,
            full.ips.to_vec(),
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
        // internal frames and call sites (a few); from the return into its
        // caller up, every frame must be the same.
        let same = spliced
            .iter()
            .rev()
            .zip(full.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        assert!(
            full.len() > 8 && same + 6 >= full.len() && same + 6 >= spliced.len(),
            "{case}: spliced {spliced:x?}\nfull {full:x?}"
        );
        assert_eq!(so, fo, "{case}: omitted frames");
    }

    /// One frame-pointer walk from the same place whatever the caller, with
    /// `recent`'s kept stacks or without.
    #[inline(never)]
    fn fp_walk_here(recent: Option<&Recent>) -> StackBuf {
        let mut b = StackBuf::new();
        assert!(fp::walk(64, &mut b, recent.map(|r| (r, None))));
        std::hint::black_box(b)
    }

    #[inline(never)]
    fn via_one(n: usize, recent: Option<&Recent>) -> StackBuf {
        if n == 0 {
            return fp_walk_here(recent);
        }
        std::hint::black_box(via_one(n - 1, recent))
    }

    /// The same code as `via_one`, at other addresses: frames of the same
    /// sizes, other return addresses.
    #[inline(never)]
    fn via_other(n: usize, recent: Option<&Recent>) -> StackBuf {
        if n == 0 {
            return fp_walk_here(recent);
        }
        std::hint::black_box(via_other(n - 1, recent))
    }

    fn checked() -> (u64, u64, u64) {
        CHECKED.with(Cell::get)
    }

    /// A frame-pointer chain laid out in `mem` (a stand-in for a thread's
    /// stack): frame `i` at `mem[2 * i]`, its caller's frame pointer then
    /// its return address, the last with a zero return address.
    fn chain(mem: &mut [usize; 32], frames: usize) {
        let base = mem.as_ptr() as usize;
        for i in 0..frames {
            mem[2 * i] = base + 16 * (i + 1);
            mem[2 * i + 1] = 0x5555_0000_1000 + 0x10 * i;
        }
        mem[2 * frames] = 0;
        mem[2 * frames + 1] = 0;
    }

    /// A walk of `mem` from its first frame with `recent`'s kept stacks, as
    /// a sampled acquisition makes it: found there after a check, or walked
    /// and kept.
    fn walk_kept(mem: &[usize; 32], recent: &mut Recent) -> (Vec<usize>, bool) {
        let start = mem.as_ptr() as usize;
        let mut b = StackBuf::new();
        let found = match recent.find(start, 64, None) {
            Some(saved) => {
                b.cached = saved;
                true
            }
            None => {
                // SAFETY: the walk reads only inside `mem`.
                unsafe { fp::walk_from(start, (start, start + 32 * 8), 64, &mut b) };
                recent.store(&b);
                false
            }
        };
        let f = b.frames();
        assert_eq!(f.hash, hash_frames(f.ips, f.omitted));
        (f.ips.to_vec(), found)
    }

    #[test]
    #[cfg(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_os = "linux"))]
    fn a_kept_stack_is_used_only_while_every_word_its_walk_read_is_unchanged() {
        let mut recent = Recent::boxed();
        let mut mem = [0usize; 32];
        chain(&mut mem, 10);
        let (frames, found) = walk_kept(&mem, &mut recent);
        assert!(!found);
        assert_eq!(frames.len(), 10);
        assert_eq!(walk_kept(&mem, &mut recent), (frames.clone(), true));

        // A return address changed: walked again, and the new one seen.
        mem[7] = 0x6666_0000_0000;
        let (changed, found) = walk_kept(&mem, &mut recent);
        assert!(!found);
        assert_eq!(changed[3], 0x6666_0000_0000);
        // Two stacks kept from this place now: the one found last is
        // checked first, so the one left behind costs no check.
        let before = checked();
        assert_eq!(walk_kept(&mem, &mut recent), (changed.clone(), true));
        assert_eq!(checked().1, before.1, "the stack left behind was checked first");

        // A frame pointer changed: the chain skips a frame.
        mem[4] = mem[6];
        let (skipped, found) = walk_kept(&mem, &mut recent);
        assert!(!found);
        assert_eq!(skipped.len(), 9);

        // The word that ended the walk changed: it goes on.
        chain(&mut mem, 10);
        assert_eq!(walk_kept(&mem, &mut recent), (frames.clone(), true));
        mem[21] = 0x7777_0000_0000;
        mem[20] = mem.as_ptr() as usize + 16 * 11;
        let (longer, found) = walk_kept(&mem, &mut recent);
        assert!(!found);
        assert_eq!(longer.len(), 11);
        assert_eq!(longer[..10], frames[..]);
    }

    #[test]
    #[cfg(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_os = "linux"))]
    fn a_release_takes_its_acquisitions_frames_only_while_memory_still_holds_them() {
        // Laid out by hand: the acquisition's two own frames at words 0 and
        // 2, the release's at 4 and 6, both returning into the same frames
        // at words 8, 10, ... 20, the last returning to 0.
        let mut mem = [0usize; 32];
        let base = mem.as_ptr() as usize;
        let at = |word: usize| base + 8 * word;
        let lay_out = |mem: &mut [usize; 32]| {
            for (word, next, ret) in [(0, 2, 0xa0), (2, 8, 0xa1), (4, 6, 0xb0), (6, 8, 0xa1)] {
                mem[word] = at(next);
                mem[word + 1] = 0x5555_0000_0000 + ret;
            }
            for word in (8..=20).step_by(2) {
                mem[word] = at(word + 2);
                mem[word + 1] = 0x5555_0000_1000 + word;
            }
            mem[22] = 0;
            mem[23] = 0;
        };
        lay_out(&mut mem);
        let bounds = (base, base + 32 * 8);
        let mut recent = Recent::boxed();
        let mut acquired = StackBuf::new();
        // SAFETY: the walks read only inside `mem`.
        unsafe { fp::walk_from(at(0), bounds, 64, &mut acquired) };
        assert_eq!(acquired.frames().ips.len(), 9);
        let slot = recent.store(&acquired).expect("kept");

        let release = |mem: &[usize; 32], recent: &Recent| {
            // Addresses taken anew from `mem` as it is now.
            let at = |word: usize| mem.as_ptr() as usize + 8 * word;
            let bounds = (at(0), at(32));
            let mut b = StackBuf::new();
            b.splice = Some(Splice {
                saved: &recent.slots[slot] as *const Saved,
                cursor: 0,
                matched: None,
            });
            // SAFETY: as above.
            unsafe { fp::walk_from(at(4), bounds, 64, &mut b) };
            let mut full = StackBuf::new();
            // SAFETY: as above.
            unsafe { fp::walk_from(at(4), bounds, 64, &mut full) };
            let f = b.frames();
            assert_eq!(f.hash, hash_frames(f.ips, f.omitted));
            (f.ips.to_vec(), full.frames().ips.to_vec(), b.took.is_some())
        };

        // The frames above the meeting point still hold: taken.
        let (spliced, full, took) = release(&mem, &recent);
        assert!(took, "the acquisition's frames were not taken");
        assert_eq!(spliced, full);

        // One of them changed since the acquisition (its function returned
        // and another call was made at the same depth): walked instead.
        mem[15] = 0x6666_0000_0000;
        let (walked, full, took) = release(&mem, &recent);
        assert!(!took, "stale frames taken from the acquisition");
        assert_eq!(walked, full);
        assert!(walked.contains(&0x6666_0000_0000));
    }

    #[test]
    #[cfg(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_os = "linux"))]
    fn a_kept_stack_is_found_only_when_memory_still_holds_it() {
        if !frame_pointers_agree_with_backtrace() {
            // A build without frame pointers: the chain breaks at once (the
            // test above checks the same on a chain it lays out itself).
            return;
        }
        let mut recent = Recent::boxed();
        // Each walk from the same places (a loop the compiler cannot
        // unroll): without kept stacks, then with them twice (kept after
        // the first).
        let walks = |recent: &mut Recent, via: fn(usize, Option<&Recent>) -> StackBuf| {
            let mut out: Vec<(Vec<usize>, bool, u64)> = Vec::new();
            for step in std::hint::black_box(vec![0, 1, 2]) {
                let b = via(20, (step > 0).then_some(&*recent));
                let f = b.frames();
                out.push((f.ips.to_vec(), !b.cached.is_null(), f.hash));
                if step == 1 {
                    recent.store(&b);
                }
            }
            out
        };
        let one = walks(&mut recent, via_one);
        let truth = &one[0].0;
        assert!(
            truth.len() > 20,
            "the frame-pointer walk found {} frames",
            truth.len()
        );
        // Walked, then found: the same frames and hash.
        assert_eq!(one[1], (truth.clone(), false, hash_frames(truth, 0)));
        assert_eq!(one[2], (truth.clone(), true, hash_frames(truth, 0)));

        // The same frame pointers, other return addresses: the check reads
        // them and fails, and the walk finds the other caller's frames.
        let before = checked();
        let other = walks(&mut recent, via_other);
        let (hits, misses, _) = checked();
        assert!(misses > before.1, "the kept stack was never checked");
        assert_eq!(hits, before.0 + 1, "found only after it was kept");
        let other_truth = &other[0].0;
        assert_ne!(other_truth, truth);
        assert_eq!(
            other[1],
            (other_truth.clone(), false, hash_frames(other_truth, 0))
        );
        assert_eq!(other[2], (other_truth.clone(), true, hash_frames(other_truth, 0)));
    }

    #[test]
    fn a_release_found_where_it_was_kept_has_the_stack_a_full_walk_gets() {
        if select(Unwinder::Auto) != Unwinder::FramePointers {
            // Only frame-pointer walks are kept to be checked.
            return;
        }
        let before = checked();
        // A loop the compiler cannot unroll: each round's calls are made
        // from the same places.
        for key in std::hint::black_box(vec![21u64, 22, 23]) {
            let _ = take(key, 3);
            same_above_the_leaf(&format!("key {key}"), give(key, 3));
        }
        let after = checked();
        // From the second round on, the acquisition and the release are
        // found; the release with a check of the frames it walked itself,
        // as its acquisition's slot still holds the frames it took.
        assert_eq!(after.0 - before.0, 4, "found");
        assert_eq!(after.2 - before.2, 2, "releases found with a partial check");
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
