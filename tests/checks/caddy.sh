#!/usr/bin/env bash
# The preview router's Caddyfile must parse and validate.
set -euo pipefail
cd "$(dirname "$0")/../.."
CADDY_DOMAIN=preview.example.com APNA_API_UPSTREAM=127.0.0.1:3000 caddy validate --config Caddyfile --adapter caddyfile 2>&1 | tail -n 3
