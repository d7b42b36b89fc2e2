#!/usr/bin/env bash
# Runs stress/src/bin/lock_production_stress_test.rs in release mode, after checking
# where its profiles will go.
#
#   ./scripts/run_lock_production_stress_test.sh [duration_s=120] [workers=8] [--yes]
#
# Upload: DD_AGENT_HOST (and DD_TRACE_AGENT_PORT, default 8126) for an agent,
# or DD_API_KEY (and DD_SITE) for agentless. With neither, profiles are
# written to local files. EXAMPLE=rlock_production_stress_test runs the
# re-entrant variant instead.
set -euo pipefail
cd "$(dirname "$0")/.."

example="${EXAMPLE:-lock_production_stress_test}"
yes=0
positional=()
for arg in "$@"; do
  case "$arg" in
    --yes|-y) yes=1 ;;
    -h|--help)
      sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
      exit 0 ;;
    -*) echo "unknown option: $arg" >&2; exit 2 ;;
    *) positional+=("$arg") ;;
  esac
done
duration="${positional[0]:-120}"
workers="${positional[1]:-8}"
if [ "${#positional[@]}" -gt 2 ]; then
  echo "usage: $0 [duration_s] [workers] [--yes]" >&2
  exit 2
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install a Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi

if [ -n "${DD_AGENT_HOST:-}" ]; then
  url="http://${DD_AGENT_HOST}:${DD_TRACE_AGENT_PORT:-8126}/info"
  if ! command -v curl >/dev/null 2>&1; then
    echo "warning: curl not found; cannot check that the agent answers at $url"
  elif curl -fsS --max-time 5 "$url" >/dev/null 2>&1; then
    echo "Upload: agent at ${DD_AGENT_HOST}:${DD_TRACE_AGENT_PORT:-8126} (its /info answers)"
  else
    echo "error: DD_AGENT_HOST is set but $url does not answer." >&2
    echo "  Is the agent running and listening there? (DD_TRACE_AGENT_PORT overrides 8126)" >&2
    exit 1
  fi
elif [ -n "${DD_API_KEY:-}" ]; then
  echo "Upload: agentless to ${DD_SITE:-datadoghq.com} (DD_API_KEY is set)"
else
  echo "Neither DD_AGENT_HOST nor DD_API_KEY is set: profiles will be written to local"
  echo "files (DD_PROFILING_OUTPUT_PPROF, default <temp dir>/lockprof/$example.<pid>.<seq>.pprof)."
  echo "To upload instead:"
  echo "  export DD_AGENT_HOST=localhost            # agent mode (DD_TRACE_AGENT_PORT, default 8126)"
  echo "  export DD_API_KEY=... DD_SITE=datadoghq.com   # agentless mode"
fi

echo
echo "Test configuration: $example, ${duration}s, $workers workers per phase"
service="$(echo "${example%_test}-test" | tr _ -)"
echo "  service ${DD_SERVICE:-$service}, env ${DD_ENV:-stress-test}, version ${DD_VERSION:-1.0.0}"
if [ "$yes" -ne 1 ]; then
  read -r -p "Continue? [y/N] " reply || reply=""
  case "$reply" in
    [yY]*) ;;
    *) echo "Aborted."; exit 1 ;;
  esac
fi

exec cargo run --release -p lockprof-stress --features datadog --bin "$example" -- "$duration" "$workers"
