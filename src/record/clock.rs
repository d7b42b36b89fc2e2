//! The profiler's clock, read only on sampled acquisitions (and contended
//! async ones), never on the fast path.
//!
//! Readings are *ticks*: the CPU's time-stamp counter where it is invariant
//! and the kernel itself keeps time with it (about 30 ns a read here, against
//! about 60 ns for `clock_gettime`), monotonic nanoseconds otherwise. Only
//! differences of two readings mean anything; the profiler thread turns
//! summed ticks into nanoseconds at each flush with a [`Calibration`] taken
//! over the whole session, so no time is spent measuring the counter's rate.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Whether [`now`] reads the time-stamp counter, decided by [`select`].
static TSC: AtomicBool = AtomicBool::new(false);

/// Chooses the clock for the next session. Cold: runs at profiler start.
pub(super) fn select() {
    TSC.store(tsc::usable(), Relaxed);
}

/// A reading in ticks; never 0, so that 0 can mean "no timestamp".
#[inline]
pub(crate) fn now() -> u64 {
    if TSC.load(Relaxed) {
        tsc::read().max(1)
    } else {
        monotonic_ns()
    }
}

/// The clock's rate, measured once per process (2 ms at the first start)
/// when it is the time-stamp counter. Only the sampling budget's windows
/// use it, which need no precision.
pub(crate) fn ticks_per_sec() -> f64 {
    static RATE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    if !TSC.load(Relaxed) {
        return 1e9;
    }
    *RATE.get_or_init(|| {
        let (t0, i0) = (now(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let ticks = between(t0, now()) as f64;
        let secs = i0.elapsed().as_secs_f64();
        if secs > 0.0 && ticks > 0.0 {
            ticks / secs
        } else {
            1e9
        }
    })
}

/// Ticks elapsed between two readings of [`now`] (0 if out of order).
#[inline]
pub(crate) fn between(start: u64, end: u64) -> u64 {
    end.saturating_sub(start)
}

/// Monotonic nanoseconds, never 0.
#[cfg(unix)]
fn monotonic_ns() -> u64 {
    // Straight to the vDSO: `Instant` adds an epoch lookup and 128-bit
    // arithmetic.
    clock_ns(libc::CLOCK_MONOTONIC).unwrap_or(0).max(1)
}

/// This thread's CPU time in nanoseconds, or 0 where it cannot be read (a
/// system call, not the vDSO: for the sampling budget, once a window).
pub(crate) fn thread_cpu_ns() -> u64 {
    #[cfg(target_os = "linux")]
    {
        clock_ns(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// `clock`'s reading in nanoseconds, `None` if `clock_gettime` failed.
#[cfg(unix)]
fn clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| {
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    })
}

#[cfg(not(unix))]
fn monotonic_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    (epoch.elapsed().as_nanos() as u64).saturating_add(1)
}

/// A reading of both the tick clock and the nanosecond clock, from which the
/// rate between them is measured.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Calibration {
    ticks: u64,
    ns: u64,
}

impl Calibration {
    pub(crate) fn now() -> Calibration {
        Calibration {
            ticks: now(),
            ns: monotonic_ns(),
        }
    }

    /// Nanoseconds per tick between `self` and a later reading: 1 when ticks
    /// are nanoseconds, or when the two readings are too close to tell.
    pub(crate) fn ns_per_tick(&self, later: &Calibration) -> f64 {
        let ticks = later.ticks.saturating_sub(self.ticks);
        let ns = later.ns.saturating_sub(self.ns);
        if !TSC.load(Relaxed) || ticks == 0 || ns < 10_000 {
            return 1.0;
        }
        ns as f64 / ticks as f64
    }
}

/// Converts summed ticks to nanoseconds.
pub(crate) fn to_ns(ticks: u64, ns_per_tick: f64) -> u64 {
    (ticks as f64 * ns_per_tick).round() as u64
}

#[cfg(target_arch = "x86_64")]
mod tsc {
    #[inline(always)]
    pub(super) fn read() -> u64 {
        // SAFETY: RDTSC has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// An invariant counter (CPUID 0x8000_0007, EDX bit 8: same rate in every
    /// power state, synchronized across cores) that the kernel also uses as
    /// its clock source, so it has checked it is synchronized.
    // `__cpuid` is a safe function from Rust 1.88 on; older compilers need
    // the `unsafe` blocks.
    #[allow(unused_unsafe)]
    pub(super) fn usable() -> bool {
        // SAFETY: CPUID is available on every x86_64 processor.
        let max_ext = unsafe { core::arch::x86_64::__cpuid(0x8000_0000) }.eax;
        if max_ext < 0x8000_0007 {
            return false;
        }
        // SAFETY: as above; the leaf exists (checked against `max_ext`).
        let invariant = unsafe { core::arch::x86_64::__cpuid(0x8000_0007) }.edx & (1 << 8) != 0;
        invariant && kernel_uses_tsc()
    }

    fn kernel_uses_tsc() -> bool {
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .map(|s| s.trim() == "tsc")
            .unwrap_or(false)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod tsc {
    pub(super) fn read() -> u64 {
        0
    }

    pub(super) fn usable() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_convert_to_the_nanoseconds_that_passed() {
        select();
        let start = Calibration::now();
        let t0 = now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let t1 = now();
        let end = Calibration::now();
        let ns = to_ns(between(t0, t1), start.ns_per_tick(&end));
        assert!(
            (19_000_000..40_000_000).contains(&ns),
            "20 ms measured as {ns} ns"
        );
    }
}
