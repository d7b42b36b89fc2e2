#!/usr/bin/env bash
# Runs criterion benchmarks in both configurations a user may have: the plain
# `cargo build --release` (no frame pointers; what a crate depending on
# lockprof gets) and a build with `-C force-frame-pointers=yes`, each in a
# target directory of its own so that neither invalidates the other.
#
#   ./scripts/bench.sh                  # every bench of this package
#   ./scripts/bench.sh uncontended      # one bench (uncontended, contended, sampled, slow_agent)
#   ./scripts/bench.sh peers            # the peers harness (benches/peers), summary mode
#
# Extra arguments after the bench name go to criterion (e.g. a filter).
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-}"
shift || true
target="${CARGO_TARGET_DIR:-$PWD/target}"

run() {
  local name="$1" flags="$2" dir="$3"
  shift 3
  echo "=== $name build (RUSTFLAGS=\"$flags\")"
  if [ "$what" = peers ]; then
    (cd benches/peers && RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir/peers" cargo run --release -- "$@")
  elif [ -n "$what" ]; then
    RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir" cargo bench --bench "$what" -- "$@"
  else
    RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir" cargo bench -- "$@"
  fi
}

run plain "" "$target" "$@"
run frame-pointer "-C force-frame-pointers=yes" "$target/frame-pointers" "$@"
