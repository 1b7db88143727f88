#!/usr/bin/env bash
# Writes link-order.txt: the functions a replica runs as a standby and as a leader exporting at a
# steady rate, standby's first, for the linker to lay out together (build.rs passes the file to
# lld's --symbol-ordering-file). Code a replica runs is otherwise spread over the whole 16 MB text
# and the kernel maps it 64 KiB around every page touched: with the order, a standby holds a few
# MiB less. The file names symbols; functions it does not name (new code, changed hashes) are laid
# out after it as without it, so a stale order costs memory, never correctness.
#
# Usage: scripts/link-order.sh [exporter binary] [seconds]
#   the binary of the Dockerfile's cargo line (the dist profile keeps its symbols): the order
#   names that build's functions, whose symbol names change with the profile and the features:
#   cargo build --profile dist --locked --no-default-features --features static-openssl \
#     --bin kube-event-exporter
# Needs valgrind (callgrind) and kube-sim (cargo build --release -p kube-sim).
set -euo pipefail
cd "$(dirname "$0")/.."
exe=${1:-${CARGO_TARGET_DIR:-target}/dist/kube-event-exporter}
secs=${2:-40}
sim=${CARGO_TARGET_DIR:-target}/release/kube-sim
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
nm "$exe" 2>/dev/null | grep ' T main$' >/dev/null || { echo "$exe has no symbols (stripped?)" >&2; exit 1; }
dir=$(mktemp -d); echo "work dir: $dir" >&2
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$dir"; }
trap cleanup EXIT

# The API server (TLS, as in a cluster) generating 100 occurrences/s.
"$sim" serve --kubeconfig "$dir/kubeconfig" --generate-rate 100 2> "$dir/sim.log" &
pids+=($!)
for _ in $(seq 100); do grep -qs 'kube-sim serving' "$dir/sim.log" && break; sleep 0.1; done

# A webhook endpoint that takes everything.
python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()' > "$dir/hook.port" &
pids+=($!)
for _ in $(seq 100); do [ -s "$dir/hook.port" ] && break; sleep 0.1; done
hook="http://127.0.0.1:$(cat "$dir/hook.port")/events"

# Default settings, as the image runs: lookups of involved objects, a file and a webhook receiver.
replica() {
  cat > "$dir/$1.yaml" <<EOF
leaderElection: {identity: $1, leaseNamespace: default}
route: {routes: [{match: [{receiver: file}, {receiver: hook}]}]}
receivers:
  - name: file
    file: {path: $dir/$1.ndjson}
  - name: hook
    webhook: {endpoint: "$hook"}
EOF
  valgrind --tool=callgrind --demangle=no --compress-strings=no --dump-instr=no \
    --callgrind-out-file="$dir/$1.cg" "$exe" --config "$dir/$1.yaml" \
    --kubeconfig "$dir/kubeconfig" --metrics-address 127.0.0.1:0 2> "$dir/$1.log" &
  pids+=($!)
}
replica leader
for _ in $(seq 600); do grep -qs 'acquired lease' "$dir/leader.log" && break; sleep 0.1; done
replica standby
for _ in $(seq 600); do grep -qs 'standing by' "$dir/standby.log" && break; sleep 0.1; done
sleep "$secs"
# Scrapes and probes, as Prometheus and the kubelet make them.
for name in leader standby; do
  addr=$(grep 'serving /metrics' "$dir/$name.log" | grep -o '127\.0\.0\.1:[0-9]*' | head -n 1)
  [ -n "$addr" ] && { curl -sf "http://$addr/metrics" >/dev/null; curl -sf "http://$addr/readyz" >/dev/null; } || true
done
sleep 2
kill -TERM "${pids[2]}" "${pids[3]}"
wait "${pids[2]}" "${pids[3]}" || true

# Functions with cost ("fn=" lines), the standby's first, each once.
fns() { sed -n 's/^fn=\(([0-9]*) \)\{0,1\}//p' "$1" | grep -v '^0x' ; }
# Only this binary's own symbols (not libc's).
nm --defined-only "$exe" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u > "$dir/defined"
{ fns "$dir/standby.cg"; fns "$dir/leader.cg"; } | awk '!seen[$0]++' \
  | awk 'NR == FNR { ok[$0] = 1; next } ok[$0]' "$dir/defined" - > link-order.txt
standby=$(fns "$dir/standby.cg" | sort -u | comm -12 - "$dir/defined" | wc -l)
echo "link-order.txt: $(wc -l < link-order.txt) functions, $standby of them run by the standby"
