#!/usr/bin/env bash
# The whole test suite: what CI runs, and what a developer runs before pushing.
#
#   ./scripts/test.sh
#
# Needs on the machine: a Rust toolchain, Go (`go tool pprof`, Debian package
# golang-go) and Python 3 with venv. `.ci/run` installs them on a fresh Debian
# machine; here, tests that need a missing tool fail and name what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --all-targets --all-features -- -D warnings
cargo test --all-features
