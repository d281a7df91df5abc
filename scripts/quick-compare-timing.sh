#!/usr/bin/env bash
# Quick side-by-side timing of flowpm and pnpm on one project against the configured registry:
# p3 cold (lockfile, empty store, no node_modules), p4 warm (store warm, no node_modules) and
# noop, interleaved round by round. Prints one line per run: tool phase seconds.
# Usage: scripts/quick-compare-timing.sh <project-dir> [rounds] [flowpm-binary]
# (The full benchmark with a loopback mirror, bun and utoo is scripts/bench.sh, issue 3.)
set -euo pipefail
project=$(realpath "$1"); rounds=${2:-3}; flowpm=$(realpath "${3:-target/release/flowpm}")
pnpm=${PNPM:-/tmp/peers/node_modules/.bin/pnpm}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N); echo "$end - $start" | bc; }
run_tool() {
  local tool=$1 dir="$work/$1"
  rm -rf "$dir" "$work/$tool-store" "$work/$tool-cache"; mkdir -p "$dir"
  cp "$project/package.json" "$project/pnpm-lock.yaml" "$dir/"
  local cmd
  if [[ $tool == flowpm ]]; then cmd=("$flowpm" install --frozen-lockfile --ignore-scripts --store-dir "$work/$tool-store" --reporter silent)
  else cmd=("$pnpm" install --frozen-lockfile --ignore-scripts --store-dir "$work/$tool-store" --cache-dir "$work/$tool-cache" --reporter=silent); fi
  echo "$tool p3 $(cd "$dir" && seconds "${cmd[@]}")"
  rm -rf "$dir/node_modules"
  echo "$tool p4 $(cd "$dir" && seconds "${cmd[@]}")"
  echo "$tool noop $(cd "$dir" && seconds "${cmd[@]}")"
}
for round in $(seq "$rounds"); do
  if (( round % 2 )); then order=(flowpm pnpm); else order=(pnpm flowpm); fi
  for tool in "${order[@]}"; do run_tool "$tool"; done
done
