#!/usr/bin/env bash
# Runs the browser e2e (tests/e2e/ui.test.mjs) against a real `apna serve`:
# starts the mock model with the ui_e2e script and `apna serve` on free
# loopback ports with a throwaway data dir, waits for /healthz, runs the test,
# and stops both. Logs go to test-output/.
#
#   cargo build -p apna-functions --bin apna --features browser && cargo build -p apna-tests --bin mock-anthropic
#   tests/e2e/run_ui_e2e.sh
#
# APNA_BIN / MOCK_ANTHROPIC_BIN override the binaries; APNA_TEMPLATE_CACHE
# defaults to target/apna-test-cache so the template's node_modules are reused.
# With --separate-origin the UI is served from its own origin (as from
# S3/CloudFront, tests/e2e/static_web.mjs) and calls the API across origins.
set -euo pipefail
separate=0
[ "${1:-}" = "--separate-origin" ] && separate=1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out="$root/test-output"
mkdir -p "$out"
apna_bin=${APNA_BIN:-$root/target/debug/apna}
mock_bin=${MOCK_ANTHROPIC_BIN:-$root/target/debug/mock-anthropic}
for b in "$apna_bin" "$mock_bin"; do
  [ -x "$b" ] || { echo "missing binary $b (build it first)" >&2; exit 1; }
done
[ -d tests/node_modules/playwright-core ] || (cd tests && npm ci --no-audit --no-fund --loglevel=error)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
data=$(mktemp -d /tmp/apna-ui-e2e.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

mock_port=$(free_port)
"$mock_bin" --port "$mock_port" --script tests/fixtures/conversations/ui_e2e.json >"$out/ui-e2e-mock.log" 2>&1 &
pids+=($!)

port=$(free_port)
web_port=$(free_port)
cors=""
[ "$separate" = 1 ] && cors="http://localhost:${web_port}"
APNA_CORS_ORIGINS="$cors" \
PORT="$port" \
APNA_DATA_DIR="$data" \
APNA_WEB_DIR="$root/web" \
APNA_TEMPLATES_DIR="$root/images/preview/templates" \
APNA_TEMPLATE_CACHE="${APNA_TEMPLATE_CACHE:-$root/target/apna-test-cache}" \
ANTHROPIC_API_KEY=sk-ant-e2e-mock \
ANTHROPIC_BASE_URL="http://127.0.0.1:${mock_port}" \
  "$apna_bin" serve >"$out/ui-e2e-apna.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 1200); do
  curl -sf -o /dev/null "http://127.0.0.1:${port}/healthz" && break
  if ! kill -0 "${pids[1]}" 2>/dev/null; then echo "apna serve exited; see $out/ui-e2e-apna.log" >&2; tail -20 "$out/ui-e2e-apna.log" >&2; exit 1; fi
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:${port}/healthz" || { echo "apna serve did not come up" >&2; exit 1; }

url="http://localhost:${port}/"
if [ "$separate" = 1 ]; then
  node tests/e2e/static_web.mjs "$web_port" "http://localhost:${port}" >"$out/ui-e2e-web.log" 2>&1 &
  pids+=($!)
  url="http://localhost:${web_port}/"
  for _ in $(seq 1 50); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
fi

cd tests
APNA_E2E_URL="$url" node --test e2e/ui.test.mjs
