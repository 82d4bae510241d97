#!/usr/bin/env bash
# The preview router's Caddyfile must validate, and real Caddy running it on
# loopback must route exactly the project hosts (tests/checks/caddy_routing.py),
# and let private previews through only past the real `apna preview-gate`
# (functions/tests/preview_gate.rs: real Caddy, gate and a stand-in dev server).
set -euo pipefail
cd "$(dirname "$0")/../.."
CADDY_DOMAIN=preview.example.com APNA_API_ORIGIN=https://api.example.com caddy validate --config Caddyfile --adapter caddyfile 2>&1 | tail -n 1
python3 tests/checks/caddy_routing.py
cargo test -q -p apna-functions --test preview_gate
