#!/bin/sh
# Seeds an empty project volume from the template, then runs Vite as the main
# process (exec), so its output is the container log and signals reach it.
set -eu
WORKSPACE="${APNA_WORKSPACE:-/workspace}"
TEMPLATE=/opt/template

cd "$WORKSPACE"
if [ ! -f package.json ]; then
  # First start on a fresh volume: template sources only, never node_modules.
  tar -C "$TEMPLATE" --exclude=./node_modules -cf - . | tar -xf -
fi
if [ ! -e node_modules ]; then
  # Dependencies are baked into the image; a symlink costs nothing per project.
  ln -s "$TEMPLATE/node_modules" node_modules
fi
# --configLoader runner: node_modules is read-only, so Vite must not write its
# bundled config into node_modules/.vite-temp.
exec node "$WORKSPACE/node_modules/vite/bin/vite.js" --configLoader runner --host "${HOST:-0.0.0.0}" --port "${PORT:-5173}"
