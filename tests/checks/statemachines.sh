#!/usr/bin/env bash
# asl-validator on every state machine, as committed (with ${…Arn} placeholders)
# and as SAM's DefinitionSubstitutions will deploy it (real Lambda ARNs).
set -euo pipefail
cd "$(dirname "$0")/../.."
validator=tests/node_modules/.bin/asl-validator
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
args=()
for f in statemachines/*.asl.json; do
  sed -E 's/"\$\{([A-Za-z]+)FunctionArn\}"/"arn:aws:lambda:us-east-1:123456789012:function:apna-\1"/' "$f" > "$tmp/$(basename "$f")"
  args+=(--json-path "$f" --json-path "$tmp/$(basename "$f")")
done
"$validator" "${args[@]}"
