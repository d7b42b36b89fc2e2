//! The eh_frame unwinder: the binary's own unwind tables (`.eh_frame`, found
//! through `.eh_frame_hdr`), read in process by `framehop`, with each
//! address's unwind rule cached per thread and applied by the walk itself.
//!
//! Why: without frame pointers (a plain `cargo build --release`) the only
//! correct unwinder was `backtrace::trace`, 5.2 µs for 30 frames, because
//! libgcc re-parses the CFI of every frame on every walk. Here a warm frame is
//! a cache lookup and one or two bounds-checked stack reads.
//!
//! Shape:
//! - The module list (text range, `.eh_frame_hdr`, `.eh_frame` of every loaded
//!   object, from `dl_iterate_phdr`) is built off any lock and published as an
//!   `Arc` with a generation number. A thread compares one atomic load with its
//!   own copy's generation, and only when it moved takes the (nanoseconds-long)
//!   lock that guards the `Arc`, to clone it.
//! - Each thread has two rule caches, made at its first walk (or ahead of it
//!   by `prepare_thread`): its own [`Rules`] (16 KiB, 4-way set-associative,
//!   keyed by return address), which says what each address's rule does (the
//!   CFA is sp or bp plus an offset, the return address is the word below it,
//!   bp is unchanged or saved at an offset from it) and which the walk applies
//!   itself; and framehop's (32 KiB), consulted only when the first misses.
//!   A warm walk touches only the first and allocates nothing.
//! - framehop's rule type is public but running one is not, so a miss learns
//!   the rule by a probe: framehop unwinds the frame, then unwinds it again
//!   from made-up registers over a made-up stack whose every word names its
//!   own address, and where the result's stack pointer, return address and
//!   frame pointer came from is the rule; it is kept only if it reproduces
//!   the real unwind. What has no such rule (a CFA expression) stays with
//!   framehop, every time.
//! - A PC outside every known module (a library loaded after the list was made)
//!   refreshes the list, at most once per [`REFRESH_INTERVAL_MS`], by one
//!   thread at a time (the others do not wait: their walk ends there).
//! - Stack reads are checked against the current thread's stack, from the
//!   walk's own stack pointer up: a frame that cannot be unwound ends the stack
//!   (counted in [`truncated`]), it never faults.
//!
//! Measured (`examples/overhead`, one sampled event 30 frames deep, 42
//! frames walked, capture + hand-off, plain release build, on the 2-core VM
//! while other builds ran, load average 3.6–8): 0.34–0.51 µs median in ten
//! runs, against 0.58–1.11 µs in ten runs interleaved with them with
//! framehop's cache alone. That cache is direct-mapped (509 slots by
//! address), so in some runs (addresses move with ASLR) two hot addresses
//! shared a slot and one of them re-parsed its CFI on every walk; and a hit
//! there cost more than the walk's own lookup and application does now. A
//! warm frame is a chain of dependent loads (return address, its rule, the
//! next return address), which is why the key is the return address itself
//! and the set its low bits: no hashing in that chain.
//!
//! Not handled: a library unloaded with `dlclose` and another loaded at its
//! addresses before the next refresh would be unwound with the first one's
//! tables, which are then unmapped.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Mutex};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{
    Error as FramehopError, ExplicitModuleSectionInfo, FrameAddress, Module, MustNotAllocateDuringUnwind,
    Unwinder as _,
};

use super::{StackBuf, MAX_COUNTED};

/// Section data is read in place, in the process's own mappings.
type Data = &'static [u8];
type FrameUnwinder = UnwinderX86_64<Data, MustNotAllocateDuringUnwind>;
type RuleCache = CacheX86_64<MustNotAllocateDuringUnwind>;

pub(super) const AVAILABLE: bool = true;

/// The shortest time between two refreshes of the module list caused by PCs
/// outside every known module: a PC that is in no module at all (JIT code)
/// then costs one `dl_iterate_phdr` per this interval, not one per walk.
const REFRESH_INTERVAL_MS: u64 = 100;

/// Walks that ended at a frame that could not be unwound: no unwind rule, a
/// stack read outside the thread's stack, a PC in no loaded object.
static TRUNCATED: AtomicU64 = AtomicU64::new(0);

/// How many eh_frame walks ended early at a frame they could not unwind.
pub(crate) fn truncated() -> u64 {
    TRUNCATED.load(Relaxed)
}

/// The loaded objects, as one walk sees them.
struct Modules {
    unwinder: FrameUnwinder,
    /// Executable ranges, sorted by start, not overlapping.
    text: Box<[(u64, u64)]>,
    /// `dlpi_adds` and `dlpi_subs` when the list was made: when they have not
    /// moved, a refresh has nothing to do.
    loads: (u64, u64),
    generation: u64,
}

impl Modules {
    /// The executable range that holds `pc`.
    #[inline]
    fn text_of(&self, pc: u64) -> Option<(u64, u64)> {
        let i = self.text.partition_point(|&(start, _)| start <= pc);
        let &(start, end) = self.text.get(i.checked_sub(1)?)?;
        (pc < end).then_some((start, end))
    }

    #[cfg(test)]
    fn contains(&self, pc: u64) -> bool {
        self.text_of(pc).is_some()
    }
}

/// The current module list; the lock is held only to swap or clone the `Arc`.
static SHARED: Mutex<Option<Arc<Modules>>> = Mutex::new(None);
/// The generation of the list in `SHARED`, 0 before the first.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// When the list was last refreshed, in ms of `CLOCK_MONOTONIC_COARSE`.
static LAST_REFRESH_MS: AtomicU64 = AtomicU64::new(0);
/// Held by the one thread that refreshes.
static REFRESHING: AtomicBool = AtomicBool::new(false);

/// One thread's view: its copy of the module list and its rule caches.
struct Local {
    modules: Option<Arc<Modules>>,
    /// What the rules of the addresses this thread has walked through do:
    /// consulted first, and the only cache a warm walk touches.
    rules: Rules,
    /// framehop's own: its rule cache, which our misses fill, and the space
    /// it parses CFI in.
    cache: RuleCache,
}

impl Local {
    fn new() -> Local {
        Local {
            modules: None,
            rules: Rules::new(),
            cache: RuleCache::new_in(),
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// Builds the module list if there is none yet, waiting for another thread
/// that is building it. Cold: profiler start (a walk never waits: without a
/// list it falls back to `backtrace`).
pub(super) fn prepare() -> bool {
    for _ in 0..10_000 {
        if GENERATION.load(Acquire) != 0 {
            return true;
        }
        refresh(true);
        if GENERATION.load(Acquire) == 0 {
            std::thread::yield_now();
        }
    }
    GENERATION.load(Acquire) != 0
}

/// Allocates this thread's rule cache now, outside any user's lock.
pub(super) fn prepare_thread() {
    let _ = LOCAL.try_with(|local| {
        if let Ok(mut local) = local.try_borrow_mut() {
            local.get_or_insert_with(Local::new);
        }
    });
}

/// Walks the caller's stack into `buf`: false (and nothing written) when
/// this thread's stack or the module list is unknown, or the thread-local
/// state is gone (thread exit), so the caller falls back to `backtrace`.
#[inline(never)]
pub(super) fn walk(limit: usize, buf: &mut StackBuf) -> bool {
    let (pc, sp, bp) = registers();
    let Some((_, hi)) = super::fp::bounds() else {
        return false;
    };
    let hi = hi as u64;
    if sp >= hi || sp % 8 != 0 {
        // Not on this thread's own stack (an alternate signal stack, a
        // coroutine's stack): its bounds are unknown.
        return false;
    }
    let regs = Regs { ip: pc, sp, bp };
    LOCAL
        .try_with(|local| {
            let Ok(mut local) = local.try_borrow_mut() else {
                return false;
            };
            let local = local.get_or_insert_with(Local::new);
            walk_from(local, pc, regs, (sp, hi), limit, buf)
        })
        .unwrap_or(false)
}

/// The caller's instruction, stack and frame pointers, read at one point, so
/// that the unwind rule of that instruction applies to that stack pointer.
#[inline(always)]
fn registers() -> (u64, u64, u64) {
    let (pc, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers and computes an address; touches no
    // memory and leaves the stack and flags as they were.
    unsafe {
        std::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        );
    }
    (pc, sp, bp)
}

/// Reads one word of the stack, only inside `[lo, hi)`: the part of this
/// thread's stack that holds the walk's own frame and its callers'.
#[inline(always)]
fn read_stack(addr: u64, (lo, hi): (u64, u64)) -> Result<u64, ()> {
    if addr < lo || addr % 8 != 0 || addr > hi.wrapping_sub(8) || hi < 8 {
        return Err(());
    }
    // SAFETY: `addr` is aligned and in `[lo, hi - 8]`, where `lo` is this
    // thread's stack pointer at the start of the walk and `hi` the top of its
    // stack, so the word is mapped and belongs to a live frame of this thread.
    Ok(unsafe { std::ptr::read_volatile(addr as *const u64) })
}

/// Unwinds from `pc` with `regs`, reading the stack only inside `stack`.
/// Separate from [`walk`] so that tests can start anywhere.
fn walk_from(
    local: &mut Local,
    pc: u64,
    mut regs: Regs,
    stack: (u64, u64),
    limit: usize,
    buf: &mut StackBuf,
) -> bool {
    let generation = GENERATION.load(Acquire);
    let stale = generation == 0 || local.modules.as_ref().map(|m| m.generation) != Some(generation);
    if stale && !sync(local) {
        return false;
    }
    let mut address = FrameAddress::from_instruction_pointer(pc);
    let mut seen = 0usize;
    let mut truncated = false;
    while seen < MAX_COUNTED {
        let Some(modules) = local.modules.as_ref() else {
            break;
        };
        match step(
            modules,
            &mut local.rules,
            &mut local.cache,
            address,
            &mut regs,
            stack,
        ) {
            Step::Caller => {
                let ra = regs.ip;
                let Some(next) = FrameAddress::from_return_address(ra) else {
                    break;
                };
                seen += 1;
                // The stack pointer of the function `ra` returns into.
                if !buf.frame(ra as usize, regs.sp as usize, limit) {
                    break;
                }
                address = next;
            }
            Step::End => break,
            Step::Lost => {
                truncated = true;
                break;
            }
            Step::Unknown => {
                // A library loaded since the list was made, or no code at all.
                refresh(false);
                let lookup = address.address_for_lookup();
                if !sync(local) || local.modules.as_ref().and_then(|m| m.text_of(lookup)).is_none() {
                    truncated = true;
                    break;
                }
            }
        }
    }
    if truncated {
        TRUNCATED.fetch_add(1, Relaxed);
    }
    buf.finish(seen);
    true
}

/// The registers a walk follows from frame to frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Regs {
    ip: u64,
    sp: u64,
    bp: u64,
}

/// What unwinding one frame gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// `Regs` are now the caller's; `ip` is the return address.
    Caller,
    /// The end of the stack.
    End,
    /// A frame that could not be unwound (a stack read out of bounds).
    Lost,
    /// An address in no object of the module list.
    Unknown,
}

/// Unwinds the frame at `address` by its cached rule, or asks framehop.
/// Only a miss looks for the object that holds `address`: the cache is
/// emptied whenever the module list changes, so a cached address is in it.
#[inline(always)]
fn step(
    modules: &Modules,
    rules: &mut Rules,
    cache: &mut RuleCache,
    address: FrameAddress,
    regs: &mut Regs,
    stack: (u64, u64),
) -> Step {
    if let Some(Rule::Cfa(cfa)) = rules.get(Rules::key(address)) {
        return cfa.apply(!address.is_return_address(), regs, stack);
    }
    // Out of line, and the registers passed by value one by one: `regs`
    // whose address is taken would be kept in memory on the fast path too.
    let (step, caller) = step_otherwise(modules, rules, cache, address, [regs.ip, regs.sp, regs.bp], stack);
    *regs = caller;
    step
}

/// [`step`] for an address whose rule is not a [`Cfa`], or not cached yet.
#[cold]
#[inline(never)]
fn step_otherwise(
    modules: &Modules,
    rules: &mut Rules,
    cache: &mut RuleCache,
    address: FrameAddress,
    [ip, sp, bp]: [u64; 3],
    stack: (u64, u64),
) -> (Step, Regs) {
    let regs = Regs { ip, sp, bp };
    match rules.get(Rules::key(address)) {
        Some(Rule::End) => (Step::End, regs),
        Some(Rule::Framehop) => by_framehop(modules, cache, address, regs, stack),
        Some(Rule::Cfa(cfa)) => {
            let mut regs = regs;
            (cfa.apply(!address.is_return_address(), &mut regs, stack), regs)
        }
        None if modules.text_of(address.address_for_lookup()).is_none() => (Step::Unknown, regs),
        None => learn(modules, rules, cache, address, regs, stack),
    }
}

/// One frame unwound by framehop (through its own rule cache), and the
/// caller's registers.
fn by_framehop(
    modules: &Modules,
    cache: &mut RuleCache,
    address: FrameAddress,
    regs: Regs,
    stack: (u64, u64),
) -> (Step, Regs) {
    let mut r = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
    let result = modules
        .unwinder
        .unwind_frame(address, &mut r, cache, &mut |addr| read_stack(addr, stack));
    let step = match result {
        Ok(Some(_)) => Step::Caller,
        Ok(None) => return (Step::End, regs),
        Err(_) => return (Step::Lost, regs),
    };
    let caller = Regs {
        ip: r.ip(),
        sp: r.sp(),
        bp: r.bp(),
    };
    (step, caller)
}

/// A walk's first time through `address` (since the module list changed):
/// framehop unwinds the frame, then what its rule does is read off a second
/// unwind of the same address from made-up registers ([`probe`]), checked
/// against the first, and cached.
fn learn(
    modules: &Modules,
    rules: &mut Rules,
    cache: &mut RuleCache,
    address: FrameAddress,
    regs: Regs,
    stack: (u64, u64),
) -> (Step, Regs) {
    let (step, caller) = by_framehop(modules, cache, address, regs, stack);
    let first = !address.is_return_address();
    let rule = match probe(modules, cache, address, regs.ip) {
        Some(Rule::End) if step == Step::End => Rule::End,
        Some(Rule::Cfa(cfa)) => {
            let mut ours = regs;
            let agrees =
                cfa.apply(first, &mut ours, stack) == step && (step != Step::Caller || ours == caller);
            if agrees {
                Rule::Cfa(cfa)
            } else {
                Rule::Framehop
            }
        }
        _ => Rule::Framehop,
    };
    rules.insert(Rules::key(address), rule);
    (step, caller)
}

/// The probe's stack and frame pointers: 8-aligned and further apart than
/// any offset framehop's rules hold (16-bit counts of words), so that the
/// caller's stack pointer tells which one its rule starts from.
const PROBE_SP: u64 = 0x1000_0000_0000;
const PROBE_BP: u64 = PROBE_SP + (1 << 32);
/// The probe's stack holds, at each address, the address itself with this
/// bit set: whatever framehop reads says where it read it.
const PROBE_READ: u64 = 1 << 62;

/// framehop's rule for `address`, just cached by framehop, as a [`Rule`]:
/// framehop unwinds the frame again from [`PROBE_SP`] and [`PROBE_BP`] over
/// a stack where every word names its own address, and its result says where
/// the caller's stack pointer, return address and frame pointer came from.
/// `None` when framehop has no cached rule for it (it unwound the frame by
/// evaluating a CFI row that no rule expresses) or the result has another
/// shape.
fn probe(modules: &Modules, cache: &mut RuleCache, address: FrameAddress, ip: u64) -> Option<Rule> {
    let hits = cache.stats().hit_count;
    let mut regs = UnwindRegsX86_64::new(ip, PROBE_SP, PROBE_BP);
    let result = modules
        .unwinder
        .unwind_frame(address, &mut regs, cache, &mut |addr| Ok(addr | PROBE_READ));
    // Only a hit runs framehop's cached rule, which is linear in the
    // registers and so read off exactly from one unwind.
    if cache.stats().hit_count != hits + 1 {
        return None;
    }
    Rule::read_off(result, &regs)
}

/// What framehop's rule for one address does, in the form the walk applies
/// itself (framehop's rules are public but how to run one is not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// No caller: the end of the stack.
    End,
    Cfa(Cfa),
    /// Anything else: framehop unwinds this address every time.
    Framehop,
}

/// The caller's stack pointer (the CFA) is the stack or frame pointer plus an
/// offset, the return address is the word below it, and the caller's frame
/// pointer is the current one or a word at an offset from the CFA. Every rule
/// framehop caches on x86_64 is one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cfa {
    /// From the stack or frame pointer, in bytes.
    offset: u32,
    /// Where the caller's frame pointer is saved, from the CFA, in bytes,
    /// when `restores_bp`.
    saved_bp: i16,
    from_bp: bool,
    restores_bp: bool,
}

impl Rule {
    /// The rule that gave `result` and `regs` in a [`probe`].
    fn read_off(result: Result<Option<u64>, FramehopError>, regs: &UnwindRegsX86_64) -> Option<Rule> {
        let ra = match result {
            Ok(Some(ra)) => ra,
            Ok(None) => return Some(Rule::End),
            Err(_) => return None,
        };
        let cfa = regs.sp();
        let (from_bp, offset) = match (cfa.checked_sub(PROBE_BP), cfa.checked_sub(PROBE_SP)) {
            (Some(d), _) if d > 0 => (true, d),
            (_, Some(d)) if d > 0 => (false, d),
            _ => return None,
        };
        if offset % 8 != 0 || ra != (cfa - 8) | PROBE_READ {
            return None;
        }
        let offset = u32::try_from(offset).ok()?;
        // A frame pointer is saved next to the return address: a rule that
        // saves it further than `i16` bytes away is left to framehop.
        let (restores_bp, saved_bp) = if regs.bp() == PROBE_BP {
            (false, 0)
        } else {
            let from_cfa = regs.bp().checked_sub(PROBE_READ)?.wrapping_sub(cfa) as i64;
            if from_cfa % 8 != 0 {
                return None;
            }
            (true, i16::try_from(from_cfa).ok()?)
        };
        Some(Rule::Cfa(Cfa {
            offset,
            saved_bp,
            from_bp,
            restores_bp,
        }))
    }
}

impl Cfa {
    /// Unwinds one frame as framehop's rule does, with the same checks, so
    /// that the same reads give the same result. (Where framehop fails on an
    /// overflow, the sums here wrap to an address that [`read_stack`]
    /// refuses, or below `sp`: the same failure.)
    #[inline(always)]
    fn apply(&self, first: bool, regs: &mut Regs, stack: (u64, u64)) -> Step {
        let base = if self.from_bp { regs.bp } else { regs.sp };
        if self.from_bp && base == 0 {
            return Step::End;
        }
        let cfa = base.wrapping_add(u64::from(self.offset));
        if cfa <= regs.sp {
            return Step::Lost;
        }
        let Ok(ra) = read_stack(cfa.wrapping_sub(8), stack) else {
            return Step::Lost;
        };
        let mut bp = regs.bp;
        if self.restores_bp {
            let at = cfa.wrapping_add(i64::from(self.saved_bp) as u64);
            match read_stack(at, stack) {
                Ok(saved) => bp = saved,
                // framehop's allowance for epilogues: in the first frame a
                // rule may place the saved frame pointer below the stack
                // pointer, already popped, and rbp holds it.
                Err(()) if first && !self.from_bp && at < regs.sp => {}
                Err(()) => return Step::Lost,
            }
        }
        if ra == 0 {
            return Step::End;
        }
        *regs = Regs { ip: ra, sp: cfa, bp };
        Step::Caller
    }
}

/// Ways per set of [`Rules`].
const WAYS: usize = 4;
/// Sets in [`Rules`]: 1024 rules in 16 KiB.
const SETS: usize = 256;

/// A thread's rules by address, set-associative: framehop's own cache is
/// direct-mapped (509 slots by address), and two hot addresses in one slot
/// (which ASLR makes happen in some runs, not others) made one of them parse
/// its CFI on every walk. Four ways keep any four addresses of a set (see
/// [`Rules::set_of`]).
struct Rules {
    sets: Box<[Set]>,
}

/// One set: a cache line, the keys first.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Set {
    /// 0 is an empty way (no code is at address 0).
    keys: [u64; WAYS],
    rules: [Rule; WAYS],
}

const _: () = assert!(std::mem::size_of::<Set>() == 64);
const _: () = assert!(SETS.is_power_of_two());

impl Set {
    const EMPTY: Set = Set {
        keys: [0; WAYS],
        rules: [Rule::Framehop; WAYS],
    };
}

impl Rules {
    fn new() -> Rules {
        Rules {
            sets: vec![Set::EMPTY; SETS].into_boxed_slice(),
        }
    }

    /// The return address itself, or the instruction pointer of the walk's
    /// first frame with the top bit set (framehop runs a rule differently
    /// there). Not the lookup address (one less for a return address): the
    /// walk is a chain of dependent loads, and every cycle between reading a
    /// return address and finding its rule is paid once per frame.
    #[inline(always)]
    fn key(address: FrameAddress) -> u64 {
        match address {
            FrameAddress::ReturnAddress(ra) => ra.get(),
            FrameAddress::InstructionPointer(ip) => ip | 1 << 63,
        }
    }

    /// The low bits of the address, folded with the next ones (return
    /// addresses are not aligned; the fold spreads code laid out at a
    /// multiple of 256 bytes). No multiplying hash: as for [`Rules::key`].
    #[inline(always)]
    fn set_of(key: u64) -> usize {
        (key ^ key >> 8) as usize % SETS
    }

    /// A hit writes nothing.
    #[inline(always)]
    fn get(&self, key: u64) -> Option<&Rule> {
        let set = self.sets.get(Self::set_of(key))?;
        let way = set.keys.iter().position(|&k| k == key)?;
        set.rules.get(way)
    }

    /// Puts `rule` first in its set; the rule put there longest ago leaves.
    fn insert(&mut self, key: u64, rule: Rule) {
        if let Some(set) = self.sets.get_mut(Self::set_of(key)) {
            set.keys.copy_within(..WAYS - 1, 1);
            set.rules.copy_within(..WAYS - 1, 1);
            set.keys[0] = key;
            set.rules[0] = rule;
        }
    }

    /// Forgets every rule: the module list changed, and an address may now
    /// be another object's.
    fn clear(&mut self) {
        self.sets.fill(Set::EMPTY);
    }
}

/// Brings this thread's copy of the module list up to date (building the
/// first list if there is none); false if there is still none.
#[cold]
#[inline(never)]
fn sync(local: &mut Local) -> bool {
    if GENERATION.load(Acquire) == 0 {
        refresh(true);
    }
    let current = match SHARED.lock() {
        Ok(shared) => shared.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    if let Some(current) = current {
        if local.modules.as_ref().map(|m| m.generation) != Some(current.generation) {
            local.rules.clear();
        }
        local.modules = Some(current);
    }
    local.modules.is_some()
}

/// Resets [`REFRESHING`] however the refresh ends.
struct RefreshClaim;

impl Drop for RefreshClaim {
    fn drop(&mut self) {
        REFRESHING.store(false, Release);
    }
}

/// Rebuilds the module list if the loader's counts moved. Unless `force`d,
/// at most once per [`REFRESH_INTERVAL_MS`]; never waits for another thread's
/// refresh.
#[cold]
#[inline(never)]
fn refresh(force: bool) {
    let now = now_ms();
    if !force && now.saturating_sub(LAST_REFRESH_MS.load(Relaxed)) < REFRESH_INTERVAL_MS {
        return;
    }
    if REFRESHING
        .compare_exchange(false, true, Acquire, Relaxed)
        .is_err()
    {
        return;
    }
    let _claim = RefreshClaim;
    LAST_REFRESH_MS.store(now, Relaxed);
    let found = enumerate();
    let current = match SHARED.lock() {
        Ok(shared) => shared.as_ref().map(|m| m.loads),
        Err(poisoned) => poisoned.into_inner().as_ref().map(|m| m.loads),
    };
    if current == Some(found.loads) {
        return;
    }
    let generation = GENERATION.load(Relaxed) + 1;
    let modules = Arc::new(found.build(generation));
    let old = {
        let mut shared = match SHARED.lock() {
            Ok(shared) => shared,
            Err(poisoned) => poisoned.into_inner(),
        };
        let old = shared.replace(modules);
        GENERATION.store(generation, Release);
        old
    };
    // The old list is freed here, outside the lock (or by the last thread
    // still walking with it).
    drop(old);
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).wrapping_mul(1000) + (ts.tv_nsec as u64) / 1_000_000
}

/// One loaded object's unwind data, as found in its program headers.
struct Object {
    name: String,
    bias: u64,
    /// Executable range, in process addresses.
    text: (u64, u64),
    eh_frame_hdr: (u64, u64),
    /// From the address `.eh_frame_hdr` gives to the end of the segment that
    /// holds it (the section's own end is not recorded anywhere cheap).
    eh_frame: (u64, u64),
}

#[derive(Default)]
struct Found {
    objects: Vec<Object>,
    loads: (u64, u64),
}

impl Found {
    fn build(self, generation: u64) -> Modules {
        let mut unwinder = FrameUnwinder::new();
        let mut text: Vec<(u64, u64)> = Vec::with_capacity(self.objects.len());
        for o in self.objects {
            // SAFETY: both ranges lie inside PT_LOAD segments (or the
            // PT_GNU_EH_FRAME segment) of an object the loader has mapped, and
            // stay mapped while it is loaded (see the module doc for dlclose).
            let (hdr, eh_frame): (Data, Data) = unsafe {
                (
                    std::slice::from_raw_parts(
                        o.eh_frame_hdr.0 as *const u8,
                        (o.eh_frame_hdr.1 - o.eh_frame_hdr.0) as usize,
                    ),
                    std::slice::from_raw_parts(
                        o.eh_frame.0 as *const u8,
                        (o.eh_frame.1 - o.eh_frame.0) as usize,
                    ),
                )
            };
            let svma = |(start, end): (u64, u64)| start - o.bias..end - o.bias;
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: Some(svma(o.text)),
                eh_frame_svma: Some(svma(o.eh_frame)),
                eh_frame: Some(eh_frame),
                eh_frame_hdr_svma: Some(svma(o.eh_frame_hdr)),
                eh_frame_hdr: Some(hdr),
                ..Default::default()
            };
            unwinder.add_module(Module::new(o.name, o.text.0..o.text.1, o.bias, info));
            text.push(o.text);
        }
        text.sort_unstable();
        text.dedup_by(|later, earlier| later.0 < earlier.1);
        Modules {
            unwinder,
            text: text.into_boxed_slice(),
            loads: self.loads,
            generation,
        }
    }
}

/// The loaded objects that have an executable segment and an `.eh_frame_hdr`.
fn enumerate() -> Found {
    let mut found = Found::default();
    // SAFETY: the callback only reads the `dl_phdr_info` it is given, within
    // the size the loader passes, and `data` is `found`, alive for the call.
    unsafe {
        libc::dl_iterate_phdr(Some(on_object), (&mut found as *mut Found).cast());
    }
    found
}

/// `dl_iterate_phdr`'s callback: records one object. Never unwinds (only
/// checked arithmetic and a `Vec` push).
unsafe extern "C" fn on_object(
    info: *mut libc::dl_phdr_info,
    size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is the `Found` that `enumerate` passed; `info` is valid
    // for this call, and its fields past `dlpi_phnum` are read only when
    // `size` says the loader provides them.
    unsafe {
        let found = &mut *data.cast::<Found>();
        let info = &*info;
        if size >= std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + 8 {
            found.loads = (info.dlpi_adds, info.dlpi_subs);
        }
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
        if let Some(object) = object(info, phdrs) {
            found.objects.push(object);
        }
    }
    0
}

/// One object's ranges from its program headers.
///
/// # Safety
/// `info` and `phdrs` describe an object that is loaded, as
/// `dl_iterate_phdr` gives them.
unsafe fn object(info: &libc::dl_phdr_info, phdrs: &[libc::Elf64_Phdr]) -> Option<Object> {
    let bias = info.dlpi_addr;
    let mut text: Option<(u64, u64)> = None;
    let mut hdr = None;
    for p in phdrs {
        if p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0 {
            let start = bias.checked_add(p.p_vaddr)?;
            let end = start.checked_add(p.p_memsz)?;
            text = Some(match text {
                Some((s, e)) => (s.min(start), e.max(end)),
                None => (start, end),
            });
        } else if p.p_type == libc::PT_GNU_EH_FRAME {
            let start = bias.checked_add(p.p_vaddr)?;
            hdr = Some((start, start.checked_add(p.p_memsz)?));
        }
    }
    let (text, hdr) = (text?, hdr?);
    if hdr.1 - hdr.0 < 8 {
        return None;
    }
    // SAFETY: the PT_GNU_EH_FRAME segment lies inside a loaded PT_LOAD
    // segment, so its `p_memsz` bytes are mapped.
    let hdr_bytes = unsafe { std::slice::from_raw_parts(hdr.0 as *const u8, (hdr.1 - hdr.0) as usize) };
    let eh_frame = eh_frame_address(hdr_bytes, hdr.0)?;
    let segment_end = phdrs.iter().find_map(|p| {
        let start = bias.checked_add(p.p_vaddr)?;
        let end = start.checked_add(p.p_memsz)?;
        (p.p_type == libc::PT_LOAD && start <= eh_frame && eh_frame < end).then_some(end)
    })?;
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: a non-null `dlpi_name` is a NUL-terminated string owned by
        // the loader.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    Some(Object {
        name,
        bias,
        text,
        eh_frame_hdr: hdr,
        eh_frame: (eh_frame, segment_end),
    })
}

/// Decodes `eh_frame_ptr`, the second field of `.eh_frame_hdr` (version 1),
/// in the pointer encodings linkers use for it.
fn eh_frame_address(hdr: &[u8], hdr_address: u64) -> Option<u64> {
    let (&[version, encoding, _, _], rest) = hdr.split_first_chunk::<4>()?;
    if version != 1 || encoding == 0xff {
        return None;
    }
    let value = match encoding & 0x0f {
        0x00 | 0x04 | 0x0c => u64::from_le_bytes(*rest.first_chunk::<8>()?),
        0x02 => u16::from_le_bytes(*rest.first_chunk::<2>()?) as u64,
        0x03 => u32::from_le_bytes(*rest.first_chunk::<4>()?) as u64,
        0x0a => i16::from_le_bytes(*rest.first_chunk::<2>()?) as i64 as u64,
        0x0b => i32::from_le_bytes(*rest.first_chunk::<4>()?) as i64 as u64,
        _ => return None,
    };
    let base = match encoding & 0x70 {
        0x00 => 0,
        // pcrel: from the field itself, 4 bytes into the header.
        0x10 => hdr_address + 4,
        // datarel: from the start of `.eh_frame_hdr`.
        0x30 => hdr_address,
        _ => return None,
    };
    Some(base.wrapping_add(value))
}

/// A walk from chosen registers, for tests: `sp` bounds the stack reads from
/// below, as the walk's own stack pointer does.
#[cfg(test)]
pub(super) fn walk_from_registers(pc: u64, sp: u64, bp: u64, limit: usize) -> Option<super::Stack> {
    let (_, hi) = super::fp::bounds()?;
    let hi = hi as u64;
    let mut buf = StackBuf::new();
    let mut local = Local::new();
    walk_from(&mut local, pc, Regs { ip: pc, sp, bp }, (sp, hi), limit, &mut buf).then(|| buf.to_stack())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eh_frame_hdr_pointer_encodings_decode() {
        // pcrel | sdata4, -0x10 from the field at 0x1004.
        let hdr = [1, 0x1b, 0x03, 0x3b, 0xf0, 0xff, 0xff, 0xff];
        assert_eq!(eh_frame_address(&hdr, 0x1000), Some(0x1004 - 0x10));
        // datarel | udata4.
        let hdr = [1, 0x33, 0x03, 0x3b, 0x20, 0, 0, 0];
        assert_eq!(eh_frame_address(&hdr, 0x1000), Some(0x1020));
        // absptr.
        let hdr = [1, 0x00, 0x03, 0x3b, 0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0];
        assert_eq!(eh_frame_address(&hdr, 0x1000), Some(0x1234_5678));
        // omitted, or a header too short.
        assert_eq!(eh_frame_address(&[1, 0xff, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0x1b, 0, 0, 0], 0), None);
    }

    #[test]
    fn this_program_is_among_the_modules() {
        assert!(prepare());
        let shared = SHARED.lock().unwrap().clone().unwrap();
        let here = this_program_is_among_the_modules as fn() as usize as u64;
        assert!(shared.contains(here));
        assert!(
            shared.contains(
                libc::qsort
                    as unsafe extern "C" fn(
                        *mut libc::c_void,
                        libc::size_t,
                        libc::size_t,
                        Option<unsafe extern "C" fn(*const libc::c_void, *const libc::c_void) -> libc::c_int>,
                    ) as usize as u64
            ),
            "libc"
        );
        assert!(!shared.contains(0x10));
    }

    #[test]
    fn a_pc_in_no_module_ends_the_walk_and_is_counted() {
        let before = truncated();
        let sp: u64;
        // SAFETY: reads a register.
        unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
        let stack = walk_from_registers(0x10, sp, 0, 64).unwrap();
        assert!(stack.ips.is_empty());
        assert_eq!(stack.omitted, 0);
        assert!(truncated() > before);
    }

    #[test]
    fn a_library_loaded_later_is_found_by_a_walk_through_it() {
        assert!(prepare());
        // SAFETY: dlopen and dlsym with NUL-terminated names; the library
        // stays loaded (never closed) while its address is used.
        let code = unsafe {
            let lib = libc::dlopen(c"libz.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            assert!(
                !lib.is_null(),
                "this test dlopens libz.so.1, which is not installed: apt-get install zlib1g"
            );
            libc::dlsym(lib, c"zlibVersion".as_ptr()) as u64
        };
        assert_ne!(code, 0);
        let sp: u64;
        // SAFETY: reads a register.
        unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
        let known = || {
            let shared = SHARED.lock().unwrap().clone().unwrap();
            shared.contains(code)
        };
        // A refresh waits REFRESH_INTERVAL_MS after the last one, which
        // another test may have just made.
        for _ in 0..5 {
            if known() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(REFRESH_INTERVAL_MS + 10));
            // Starts in libz: the walk refreshes the list to unwind it.
            walk_from_registers(code, sp, 0, 8).unwrap();
        }
        assert!(known());
    }

    #[test]
    fn garbage_on_the_stack_never_faults() {
        // A fake stack of words that look like stack and code addresses,
        // walked from a real PC: every read is bounds-checked, so the walk
        // ends (truncated or not) without touching anything outside the stack.
        let code = garbage_on_the_stack_never_faults as fn() as usize as u64;
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut fake = [0u64; 512];
        let base = fake.as_ptr() as u64;
        for w in fake.iter_mut() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            *w = match rng % 4 {
                0 => code + rng % 4096,
                1 => base + (rng % 8192),
                2 => rng,
                _ => u64::MAX - rng % 64,
            };
        }
        let fake = std::hint::black_box(fake);
        for start in (0..256).step_by(8) {
            let sp = fake.as_ptr() as u64 + start * 8;
            let bp = fake[start as usize + 1];
            let stack = walk_from_registers(code + 16, sp, bp, 64).unwrap();
            assert!(stack.ips.len() <= 64);
        }
    }

    /// The current module list.
    fn modules() -> Arc<Modules> {
        assert!(prepare());
        SHARED.lock().unwrap().clone().unwrap()
    }

    /// A made-up stack: nonzero words, a third of them addresses inside it.
    fn fake_stack(seed: u64) -> Box<[u64; 1024]> {
        let mut fake = Box::new([0u64; 1024]);
        let base = fake.as_ptr() as u64;
        let mut rng = seed | 1;
        for w in fake.iter_mut() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            *w = if rng % 3 == 0 {
                base + (rng >> 8) % 8192 / 8 * 8
            } else {
                rng | 1
            };
        }
        fake
    }

    /// Unwinds one frame at `address` from `regs` over `fake` (reads from
    /// `sp` up, as in a walk), by [`step`].
    fn step_over(
        modules: &Modules,
        rules: &mut Rules,
        cache: &mut RuleCache,
        address: FrameAddress,
        regs: &mut Regs,
        fake: &[u64; 1024],
    ) -> Step {
        let hi = fake.as_ptr() as u64 + 8 * 1024;
        step(modules, rules, cache, address, regs, (regs.sp, hi))
    }

    /// The same by framehop alone.
    fn framehop_over(
        modules: &Modules,
        cache: &mut RuleCache,
        address: FrameAddress,
        regs: &mut Regs,
        fake: &[u64; 1024],
    ) -> Step {
        let hi = fake.as_ptr() as u64 + 8 * 1024;
        let (step, caller) = by_framehop(modules, cache, address, *regs, (regs.sp, hi));
        *regs = caller;
        step
    }

    /// Registers pointing into `fake`.
    fn regs_in(fake: &[u64; 1024], ip: u64, sp_word: u64, bp_word: u64) -> Regs {
        let base = fake.as_ptr() as u64;
        Regs {
            ip,
            sp: base + 8 * sp_word,
            bp: base + 8 * bp_word,
        }
    }

    #[test]
    fn addresses_that_share_a_direct_mapped_slot_both_stay_cached() {
        let modules = modules();
        let here = addresses_that_share_a_direct_mapped_slot_both_stay_cached as fn() as usize as u64;
        let (_, end) = modules.text_of(here).unwrap();
        let fake = fake_stack(7);
        // Lookup addresses 509 bytes apart share a slot of framehop's
        // direct-mapped cache. Take WAYS of them that also share a set of
        // ours and have a rule of the form we cache.
        let mut scratch = (Rules::new(), RuleCache::new_in());
        let mut colliding: Vec<FrameAddress> = Vec::new();
        let mut lookup = here;
        while colliding.len() < WAYS && lookup < end {
            let address = FrameAddress::from_return_address(lookup + 1).unwrap();
            let same_set = colliding
                .first()
                .is_none_or(|a| Rules::set_of(Rules::key(*a)) == Rules::set_of(Rules::key(address)));
            if same_set {
                let mut regs = regs_in(&fake, lookup + 1, 16, 600);
                step_over(
                    &modules,
                    &mut scratch.0,
                    &mut scratch.1,
                    address,
                    &mut regs,
                    &fake,
                );
                if matches!(scratch.0.get(Rules::key(address)), Some(Rule::Cfa(_))) {
                    colliding.push(address);
                }
            }
            lookup += 509;
        }
        assert_eq!(
            colliding.len(),
            WAYS,
            "{WAYS} colliding addresses with cacheable rules in this binary"
        );

        let (mut rules, mut cache) = (Rules::new(), RuleCache::new_in());
        let mut alone = RuleCache::new_in();
        let mut asked = 0;
        for round in 0..10 {
            if round == 1 {
                asked = cache.stats().total();
            }
            for &address in &colliding {
                let ip = address.address_for_lookup() + 1;
                let (mut ours, mut theirs) = (regs_in(&fake, ip, 16, 600), regs_in(&fake, ip, 16, 600));
                let step = step_over(&modules, &mut rules, &mut cache, address, &mut ours, &fake);
                let expected = framehop_over(&modules, &mut alone, address, &mut theirs, &fake);
                assert_eq!(step, expected, "{address:x?}");
                if step == Step::Caller {
                    assert_eq!(ours, theirs, "{address:x?}");
                }
            }
        }
        // Framehop alone evicted them from one another at every turn; ours
        // never asked framehop again after the first round.
        assert!(alone.stats().miss_wrong_address_count >= 9 * WAYS as u64);
        assert_eq!(cache.stats().total(), asked);
    }

    #[test]
    fn cached_rules_unwind_as_framehop_does() {
        // Rules learnt on one stack, applied on another: the same result as
        // framehop's on that other stack, for every address around here,
        // as a first frame and as a return address.
        let modules = modules();
        let here = cached_rules_unwind_as_framehop_does as fn() as usize as u64;
        let (start, end) = modules.text_of(here).unwrap();
        let (learnt_on, applied_on) = (fake_stack(11), fake_stack(12));
        let (mut rules, mut cache) = (Rules::new(), RuleCache::new_in());
        let mut alone = RuleCache::new_in();
        let (mut tried, mut cached) = (0, 0);
        let mut lookup = here.saturating_sub(1 << 15).max(start);
        while lookup < (here + (1 << 15)).min(end - 1) {
            let first = FrameAddress::from_instruction_pointer(lookup);
            let ret = FrameAddress::from_return_address(lookup + 1).unwrap();
            for (address, ip) in [(first, lookup), (ret, lookup + 1)] {
                let mut regs = regs_in(&learnt_on, ip, 40, 300);
                step_over(&modules, &mut rules, &mut cache, address, &mut regs, &learnt_on);
                let (mut ours, mut theirs) =
                    (regs_in(&applied_on, ip, 8, 200), regs_in(&applied_on, ip, 8, 200));
                let step = step_over(&modules, &mut rules, &mut cache, address, &mut ours, &applied_on);
                let expected = framehop_over(&modules, &mut alone, address, &mut theirs, &applied_on);
                assert_eq!(
                    step,
                    expected,
                    "{address:x?}: {:?}",
                    rules.get(Rules::key(address))
                );
                if step == Step::Caller {
                    assert_eq!(ours, theirs, "{address:x?}: {:?}", rules.get(Rules::key(address)));
                }
                tried += 1;
                cached += usize::from(rules.get(Rules::key(address)) != Some(&Rule::Framehop));
                // Keep the next address's rule from evicting this one first.
                rules.clear();
            }
            lookup += 7;
        }
        assert!(tried > 5000);
        assert!(cached * 100 >= tried * 95, "{cached} of {tried} addresses cached");
    }

    /// One walk from here, with `local`'s caches.
    #[inline(never)]
    fn walk_with(local: &mut Local) -> Vec<usize> {
        let (pc, sp, bp) = registers();
        let (_, hi) = super::super::fp::bounds().unwrap();
        let mut buf = StackBuf::new();
        assert!(walk_from(
            local,
            pc,
            Regs { ip: pc, sp, bp },
            (sp, hi as u64),
            64,
            &mut buf
        ));
        buf.to_stack().ips.to_vec()
    }

    #[test]
    fn a_warm_walk_asks_framehop_nothing() {
        assert!(prepare());
        let mut local = Local::new();
        let mut stacks = Vec::new();
        let mut asked = Vec::new();
        // One call site (an unknown trip count is not unrolled): the same
        // return addresses both times.
        for _ in 0..std::hint::black_box(2) {
            stacks.push(walk_with(&mut local));
            asked.push(local.cache.stats().total());
        }
        assert!(stacks[0].len() > 3, "{:x?}", stacks[0]);
        assert_eq!(stacks[0], stacks[1]);
        assert_eq!(asked[0], asked[1]);
    }
}
