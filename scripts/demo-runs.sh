#!/usr/bin/env bash
# Runs the demo N times in a row (default 100) and counts the runs that did not end
# "lost 0, duplicated 0". A failing run keeps its directory (replica logs, configs, outputs) and
# prints its path; this script lists them at the end. Exit 1 if any run failed.
#   scripts/demo-runs.sh [RUNS] [DEMO ARGS...]     e.g. scripts/demo-runs.sh 100 --duration 5s
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
shift || true
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--duration 5s)
cargo build --release --locked --bin kube-event-exporter >&2 || exit 2
bin=target/release/kube-event-exporter
failed=0
kept=()
for i in $(seq 1 "$runs"); do
  out=$("$bin" demo "${args[@]}" 2>target/demo-run.err)
  status=$?
  last=$(printf '%s\n' "$out" | tail -n 1)
  if [ $status -ne 0 ] || ! grep -q 'lost 0, duplicated 0' <<<"$last"; then
    failed=$((failed + 1))
    dir=$(sed -n 's/^demo: kept //p' target/demo-run.err)
    kept+=("${dir:-?}")
    echo "run $i: FAILED (exit $status): $last" >&2
    sed -n 's/^\(demo: \(lost\|duplicated\|failed\).*\)/  \1/p' target/demo-run.err >&2
  else
    echo "run $i: $last" >&2
  fi
done
echo "demo runs: $runs, failed $failed"
for d in "${kept[@]}"; do echo "  kept: $d"; done
[ $failed -eq 0 ]
