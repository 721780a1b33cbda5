#!/usr/bin/env bash
# Where a batch's CPU goes: runs the five mocks (every call 100 ms) and the gateway as `npm start` would, sends one batch
# of USERS through the CLI, and prints the wall time and the CPU time per item of each process, the gateway's split by
# thread: the event loop, the batch merge threads (those at BATCH_CPU_NICENESS) and the rest (interactive merge threads,
# V8's garbage-collection and compiler helpers, libuv's pool). Linux only (/proc). Needs `npm run build` first.
# It takes ports 3000, 4001-4005 and 9464: run it alone, e.g. in a network namespace of its own:
#   unshare -n bash -c 'ip link set lo up; bench/batch-cpu.sh 10000'
# Extra arguments are gateway settings: bench/batch-cpu.sh 10000 BATCH_CPU_NICENESS=0
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-10000}
shift || true
out=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$out"; }
trap cleanup EXIT

port=4001
for name in profile orders recommendations inventory loyalty; do
  MOCK_PORT=$port MOCK_LATENCY_MS=100 MOCK_JITTER_MS=0 node dist/mock-services/main.js "$name" > "$out/mock-$name.log" 2>&1 &
  pids+=($!)
  port=$((port + 1))
done
env "$@" LOG_LEVEL=warn PORT=3000 OBSERVABILITY_PORT=9464 node dist/src/server.js > "$out/gateway.log" 2>&1 &
gateway=$!
pids+=("$gateway")
for url in http://127.0.0.1:400{1..5}/health http://127.0.0.1:3000/health; do
  for _ in $(seq 150); do curl -sf "$url" > /dev/null && break; sleep 0.1; done
done
niceness=$(env "$@" node -e "console.log(process.env.BATCH_CPU_NICENESS ?? 10)")

ticks() { awk '{ print $14 + $15 }' "$1"; }
# The gateway's threads as "group ticks": main (its first thread), batch-merge (at the batch's niceness), other.
threads() {
  for task in /proc/"$gateway"/task/*; do
    group=other
    [[ ${task##*/} == "$gateway" ]] && group=main
    [[ ${task##*/} != "$gateway" && $(awk '{ print $19 }' "$task/stat") == "$niceness" && $niceness != 0 ]] && group=batch-merge
    echo "$group $(ticks "$task/stat")"
  done | awk '{ sum[$1] += $2 } END { for (group in sum) print group, sum[group] }' | sort
}
mocks() { for pid in "${pids[@]:0:5}"; do ticks /proc/"$pid"/stat; done | paste -sd' '; }

threads > "$out/before"
mocks_before=$(mocks)
started=$(date +%s.%N)
node dist/scripts/batch.js --url http://127.0.0.1:3000 --count "$users" --out "$out/results.ndjson" 2> "$out/cli.log"
ended=$(date +%s.%N)
threads > "$out/after"
mocks_after=$(mocks)

hz=$(getconf CLK_TCK)
echo "$users users in $(echo "$ended - $started" | bc) s: $(tail -1 "$out/cli.log")"
echo "CPU per item (ms):"
join "$out/before" "$out/after" | awk -v n="$users" -v hz="$hz" '{ d = ($3 - $2) * 1000 / hz / n; total += d; printf "  gateway %-12s %.3f\n", $1, d } END { printf "  gateway total        %.3f\n", total }'
paste <(tr ' ' '\n' <<< "$mocks_before") <(tr ' ' '\n' <<< "$mocks_after") <(printf '%s\n' profile orders recommendations inventory loyalty) \
  | awk -v n="$users" -v hz="$hz" '{ d = ($2 - $1) * 1000 / hz / n; total += d; printf "  mock %-15s %.3f\n", $3, d } END { printf "  mocks total          %.3f\n", total }'
echo "gateway peak RSS: $(awk '/VmHWM/ { printf "%d MiB", $2 / 1024 }' /proc/"$gateway"/status)"
