#!/usr/bin/env bash
# The Lambda build as a deploy does it, too slow for tests/run (the first
# build compiles ~400 crates for aarch64 with fat LTO; each further function
# is one more LTO link). Needs the SAM CLI, Cargo Lambda with Zig and the
# aarch64 target (see infra/README.md, "Before the first deploy"); no Docker.
#
#   tests/sam_build.sh                     plain `sam build ApiHealthzFunction` from samconfig.toml
#   tests/sam_build.sh Fn1 Fn2 …           those functions
#   tests/sam_build.sh --all               every function (the whole deploy build)
#   tests/sam_build.sh --variant NAME      one function with other profile settings or features
#                                          (BENCHMARKS.md, "Lambda package size"); NAME is one of
#                                          the variants below
#
# Checks that each .aws-sam/build/<Fn>/bootstrap is a stripped aarch64 ELF
# executable built with the `lambda-release` profile's settings, and prints its size
# and zipped size (the zip `sam deploy` uploads: deflate, level 6);
# tests/checks/sam.sh then checks that each is at most 8 MB zipped. Build
# outputs are left in .aws-sam/ and target/; remove them when done:
#   rm -rf .aws-sam target/lambda target/aarch64-unknown-linux-gnu
set -euo pipefail
cd "$(dirname "$0")/.."

export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

zipped() { # file → bytes of a deflate zip of it, as `sam package` makes
  python3 - "$1" <<'PY'
import io, sys, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(sys.argv[1], "bootstrap")
print(len(buf.getvalue()))
PY
}

check_bootstrap() { # path
  local info
  info=$(file -b "$1")
  case "$info" in
    *ELF\ 64-bit*ARM\ aarch64*stripped*) ;;
    *) echo "$1: not a stripped aarch64 ELF executable: $info" >&2; return 1 ;;
  esac
  if grep -q 'not stripped' <<<"$info"; then
    echo "$1: has symbols (the lambda profile strips them): $info" >&2; return 1
  fi
}

report() { # label path
  local size zip
  size=$(stat -c %s "$2")
  zip=$(zipped "$2")
  printf '%-34s %8.1f MB %8.2f MB zipped\n' "$1" "$(echo "$size/1048576" | bc -l)" "$(echo "$zip/1048576" | bc -l)"
}

if [ "${1:-}" = "--variant" ]; then
  # Same command SAM runs (cargo lambda build --release --arm64), with the
  # release profile set per variant on the command line; each variant in its
  # own target directory, removed afterwards.
  name=${2:?variant name}
  bin=${BIN:-api-healthz}
  base=()
  case "$name" in
    release) base=() ;;                                   # main before #13: 16 codegen units, no LTO
    lto-thin) base=(--config 'profile.release.lto="thin"') ;;
    lto-fat) base=(--config 'profile.release.lto="fat"' --config profile.release.codegen-units=1) ;;
    opt-s) base=(--config 'profile.release.lto="fat"' --config profile.release.codegen-units=1 --config 'profile.release.opt-level="s"') ;;
    opt-z) base=(--config 'profile.release.lto="fat"' --config profile.release.codegen-units=1 --config 'profile.release.opt-level="z"') ;;
    abort) base=(--config 'profile.release.lto="fat"' --config profile.release.codegen-units=1 --config 'profile.release.panic="abort"') ;;
    lambda) base=() ;;                                    # what SAM builds now (functions/Cargo.toml)
    *) echo "unknown variant $name" >&2; exit 2 ;;
  esac
  dir=${VARIANT_TARGET_DIR:-/tmp/apna-variant-$name}
  start=$(date +%s)
  (cd functions && CARGO_TARGET_DIR="$dir" cargo lambda build --release --arm64 --bin "$bin" \
    ${FEATURES:+--no-default-features --features "$FEATURES"} "${base[@]}" >"$dir.log" 2>&1) || { tail -30 "$dir.log"; exit 1; }
  end=$(date +%s)
  check_bootstrap "$dir/lambda/$bin/bootstrap"
  report "$bin ($name${FEATURES:+, features $FEATURES})" "$dir/lambda/$bin/bootstrap"
  echo "build: $((end - start)) s"
  [ -n "${KEEP:-}" ] || rm -rf "$dir"
  exit 0
fi

# `sam build` takes one resource (or none: all of them), so several named
# functions are built one after the other, each reported as it is done (a
# later `sam build` replaces .aws-sam/build).
total=0
report_built() {
  local fn
  for fn in $(cd .aws-sam/build && ls -d */ | tr -d /); do
    [ -f ".aws-sam/build/$fn/bootstrap" ] || continue
    check_bootstrap ".aws-sam/build/$fn/bootstrap"
    report "$fn" ".aws-sam/build/$fn/bootstrap"
    total=$((total + 1))
  done
}

start=$(date +%s)
if [ "${1:-}" = "--all" ]; then
  # Plain `sam build`: samconfig.toml gives the template, beta_features, no cache.
  sam build
  report_built
else
  for fn in "${@:-ApiHealthzFunction}"; do
    t0=$(date +%s)
    sam build "$fn"
    echo "sam build $fn: $(( $(date +%s) - t0 )) s"
    report_built
  done
fi
end=$(date +%s)
echo
echo "sam build ${*:-ApiHealthzFunction}: $((end - start)) s in all"
echo "$total bootstrap(s): stripped aarch64 ELF executables"
