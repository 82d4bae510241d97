#!/usr/bin/env bash
# The sandbox image's Dockerfile must pass hadolint.
set -euo pipefail
cd "$(dirname "$0")/../.."
hadolint images/preview/Dockerfile && echo "hadolint: images/preview/Dockerfile ok"
