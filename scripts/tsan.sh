#!/usr/bin/env bash
# ThreadSanitizer run of the concurrency tests (needs a nightly toolchain):
#
#   ./scripts/tsan.sh            # prints one line per test binary, then a summary
#
# The nightly toolchain here has no `rust-src`, so `-Zbuild-std` (an
# instrumented std) is not available: std is used as shipped and the ABI check
# is waived with `-Cunsafe-allow-abi-mismatch=sanitizer`. Our crate and every
# dependency (parking_lot, crossbeam-channel, …) are instrumented; std's own
# internals are not, so a race inside std would go unseen, and a report whose
# stack lies entirely in std is not ours. With `rust-src` installed
# (`rustup component add rust-src --toolchain nightly`), set BUILD_STD=1.
set -uo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
flags="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer"
extra=()
if [ "${BUILD_STD:-0}" = 1 ]; then
  flags="-Zsanitizer=thread"
  extra=(-Zbuild-std)
fi
export RUSTFLAGS="$flags" RUSTDOCFLAGS="$flags"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/tsan"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=0 second_deadlock_stack=1 suppressions=$(pwd)/scripts/tsan.supp}"

tests=(
  counts_are_exact_at_full_capture
  condvar_wait_is_not_hold
  panics_and_drops_are_contained
  threads_and_sessions_come_and_go
  locks_dropped_during_a_flush_lose_no_counts
  periodic_flushes_happen_under_steady_load
  injected_profiler_panics_are_caught
  soak_every_lock_type_at_full_capture
)
args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done

log=$(mktemp)
cargo +nightly test "${extra[@]}" --no-fail-fast --target "$target" --features fault-injection "${args[@]}" \
  -- --test-threads=1 >"$log" 2>&1
status=$?
races=$(grep -c "WARNING: ThreadSanitizer: data race" "$log")
# Where each racing access happened: the first frame of its stack outside
# std and the sanitizer runtime. A report is ours if that frame is in src/.
# (crossbeam-channel's wakers and std's Arc use fences, which TSan does not
# model without an instrumented std: reports there are known false positives.)
where=$(awk '/WARNING: ThreadSanitizer/{want=0}
  /^  (Read|Write|Atomic|Previous)/{want=1; next}
  want && /^ +#[0-9]+ / && $0 !~ /\/rustc\// && $0 !~ /compiler-rt|sanitizer_common/ {
    match($0, /\/[^ ]*\.rs/); p=substr($0,RSTART,RLENGTH)
    sub(/.*registry\/src\/[^\/]*\//,"",p); print p; want=0 }' "$log")
ours=$(echo "$where" | grep -c "$(pwd)/src/" || true)
echo "racing accesses by first non-std frame:"
echo "$where" | sed "s#$(pwd)/##" | sort | uniq -c | sort -rn | sed 's/^/  /'
grep -E "^test result|Running " "$log" | sed 's/^/  /'
echo "tsan: exit $status, data race reports: $races, accesses first seen in our src/: $ours (full log: $log)"
[ "$ours" = 0 ]
