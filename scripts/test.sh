#!/usr/bin/env bash
# The whole test suite: what CI runs, and what a developer runs before pushing.
#
#   ./scripts/test.sh
#
# Needs on the machine: a Rust toolchain, Go (`go tool pprof`, Debian package
# golang-go), Chromium (the flame graph test, Debian package chromium) and
# Python 3 with venv. `.ci/run` installs them on a fresh Debian machine; here,
# tests that need a missing tool fail and name what to install.
#
# `--all-features` builds the `lockprof` command (feature `cli`) and runs its
# tests, including the bounded fuzzing of the profile decoder and the report
# builders (proptests with fixed case counts, a few seconds; failures are kept
# in proptest-regressions/ and replayed first on later runs), and Datadog's
# Rust tracer for the end-to-end test of trace correlation (feature
# `datadog-tracer-e2e`, against the test agent installed below). The stress
# suite (stress/) is a default member of the workspace: the commands below
# cover it too.
set -euo pipefail
cd "$(dirname "$0")/.."

# Datadog's test agent, for the end-to-end upload tests.
if [ ! -x .venv/bin/ddapm-test-agent ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check ddapm-test-agent
fi

# Loom models of the per-thread count tables and of the
# per-thread event queue, a package of its own (loom-model/) so that
# `--cfg loom` rebuilds only loom.
(cd loom-model && RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../target}/loom" cargo test --release)

cargo fmt --all -- --check
cargo clippy --all-targets --all-features -- -D warnings
# The default features too: code behind a feature must not break the build
# a user gets by default.
cargo clippy --all-targets -- -D warnings

# No test writes under the default output directory (`<temp dir>/lockprof/`,
# shared by every program profiled without DD_PROFILING_OUTPUT_PPROF): the
# suite runs with a temp dir of its own, which must hold no `lockprof/` after.
suite_tmp="$(mktemp -d)"
trap 'rm -rf "$suite_tmp"' EXIT
TMPDIR="$suite_tmp" cargo test --all-features
if [ -e "$suite_tmp/lockprof" ]; then
  echo "error: tests wrote under the default output directory:" >&2
  find "$suite_tmp/lockprof" >&2
  exit 1
fi

# Without uploads (`default-features = false`: no `datadog` feature): the
# small tree builds cleanly, and the library's unit tests and the tests of
# what that build promises pass. A few of the integration tests, not all:
# the rest exercise the same code as above.
cargo clippy --no-default-features --all-targets -- -D warnings
cargo test --no-default-features --lib \
  --test without_the_datadog_feature_profiles_go_to_files \
  --test the_environment_configures_what_the_builder_does_not_set \
  --test swapping_the_import_is_enough \
  --test lock_names_for_every_placement \
  --test file_output_never_follows_symlinks
