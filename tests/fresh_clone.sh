#!/usr/bin/env bash
# Times a fresh clone to a running `apna serve` (BENCHMARKS.md, issue #3):
# clone this repository into a temp dir, `cargo run --release -- serve` with an
# empty data dir (the template's one-time npm ci included) until the URL is
# printed, check /healthz, stop. Not part of tests/run: it is a benchmark.
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$src" "$work/apna" && cd "$work/apna"
port=${PORT:-3917}
start=$(date +%s.%N)
APNA_DATA_DIR="$work/data" PORT=$port cargo run --release -- serve >"$work/serve.log" 2>&1 &
pid=$!
until grep -q "http://" "$work/serve.log" 2>/dev/null; do
  kill -0 $pid 2>/dev/null || { echo "apna serve exited:"; tail -20 "$work/serve.log"; exit 1; }
  sleep 1
done
end=$(date +%s.%N)
echo "clone → running apna serve: $(echo "$end - $start" | bc) s"
grep -E "Finished .release" "$work/serve.log"
curl -s "localhost:$port/healthz"; echo
echo "crates in the local build: $(cargo tree -e normal --prefix none 2>/dev/null | sed 's/ (\*)//' | sort -u | wc -l)"
kill $pid; wait $pid 2>/dev/null
