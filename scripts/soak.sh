#!/usr/bin/env bash
# The long reliability runs, not part of the default suite:
#
#   ./scripts/soak.sh                # 5 minutes
#   LOCKPROF_SOAK_SECS=60 ./scripts/soak.sh
#
# 64 threads over every lock type (Mutex, RwLock read and write, Condvar,
# ReentrantMutex) and 64 tokio tasks over the async ones (mutex, RwLock read
# and write, semaphore) at 100% capture with a 5 s flush interval, in a
# release build. Prints one line per check, pass or fail with its figure:
#   no deadlock (a watchdog ends the run if threads or tasks make no progress
#   for 30 s, or stopping takes longer), profiles written, exact per-lock
#   counts over all flushed profiles (reads: exact less at most the reported
#   dropped events), dropped events reported, RSS flat after warm-up, no
#   flush longer than its interval.
# Exits non-zero if any check fails.
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
cargo test --release --features tokio --test soak_every_lock_type_at_full_capture -- \
  --ignored --exact soak_5_minutes --nocapture >"$log" 2>&1
status=$?
lines=$(grep -E "^SOAK (PASS|FAIL)" "$log" | sed 's/^SOAK //')
if [ -z "$lines" ]; then
  echo "FAIL soak: no checks ran (exit $status); log in $log"
  tail -20 "$log"
  exit 1
fi
echo "$lines"
fails=$(echo "$lines" | grep -c "^FAIL")
echo "soak: $(echo "$lines" | grep -c "^PASS") passed, $fails failed (exit $status; log in $log)"

churn_secs=${LOCKPROF_CHURN_SECS:-60}
churn_status=0
for names in 0 2000; do
  out=$(cargo run --quiet --release --example churn -- --seconds "$churn_secs" --names "$names" 2>&1)
  s=$?
  echo "$out"
  if [ "$s" != 0 ] || ! echo "$out" | grep -q "target exact: ok" || echo "$out" | grep -q "MISSED"; then
    churn_status=1
  fi
done
echo "churn: $([ "$churn_status" = 0 ] && echo "every target met" || echo "a target MISSED or the run failed")"
[ "$status" = 0 ] && [ "$fails" = 0 ] && [ "$churn_status" = 0 ]
