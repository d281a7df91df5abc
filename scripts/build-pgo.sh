#!/usr/bin/env bash
# Release build of flowpm optimised with a profile of real installs (profile-guided
# optimisation): the build the benchmarks run (scripts/bench.sh, scripts/ab.py).
#
# Usage: scripts/build-pgo.sh [--project DIR] [--registry URL]
#   --project DIR    the project the training installs (default fixtures/projects/example:
#                    51 real packages, on purpose not the benchmark's project)
#   --registry URL   where its packages come from (default: the configured registry, as for
#                    `flowpm install`: npm_config_registry, .npmrc, `npm config get registry`)
#
# 1. builds flowpm with -Cprofile-generate into target/pgo/instrumented;
# 2. runs it on the project, in a temp dir: resolve from scratch (cold metadata cache), a cold
#    frozen install, a warm one, a no-op, `remove` and `add` of a dependency, a resolve-only
#    run from the cache;
# 3. merges the profiles with the llvm-profdata of rustc's own LLVM (rustup's llvm-tools,
#    added if missing);
# 4. builds target/pgo/release/flowpm with -Cprofile-use.
# What it buys, measured: PERF.md, session 22 (resolution's CPU -5 to -8%; p3 within noise).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
project=fixtures/projects/example
registry=()

log() { printf '[build-pgo] %s\n' "$*" >&2; }
die() { printf '[build-pgo] error: %s\n' "$*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --project) project=$2; shift 2 ;;
    --registry) registry=(--registry "$2"); shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0" >&2; exit 2 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ -f $project/package.json ]] || die "no package.json in $project"
project=$(realpath "$project")

# The profile format follows LLVM's version: only rustc's own llvm-profdata reads it for sure.
host=$(rustc -vV | sed -n 's/^host: //p')
profdata=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
if [[ ! -x $profdata ]]; then
  command -v rustup >/dev/null || die "no $profdata and no rustup to add llvm-tools"
  log "adding rustup's llvm-tools (llvm-profdata)"
  rustup component add llvm-tools >&2
fi
[[ -x $profdata ]] || die "no llvm-profdata at $profdata"

out=$repo/target/pgo
work=$(mktemp -d "${TMPDIR:-/tmp}/flowpm-pgo.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Fixed paths: both end up in RUSTFLAGS, which cargo's fingerprints include.
profiles=$out/profiles
rm -rf "$profiles"

log "instrumented build (target/pgo/instrumented)"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$profiles" CARGO_TARGET_DIR=$out/instrumented \
  cargo build --release -p flowpm
trained=$out/instrumented/release/flowpm

log "training on $project"
run() { # run <what> <args...>: one flowpm command in the training copy
  local what=$1; shift
  log "  $what"
  (cd "$work/project" && LLVM_PROFILE_FILE="$profiles/flowpm-%m-%p.profraw" \
    "$trained" "$@" --store-dir "$work/store" --reporter silent >/dev/null) \
    || die "training step failed: $what (flowpm $*)"
}
mkdir -p "$work/project"
cp "$project/package.json" "$work/project/"
common=(--ignore-scripts "${registry[@]}")
first_dep=$(python3 -c 'import json,sys; print(next(iter(json.load(open(sys.argv[1])).get("dependencies", {})), ""))' \
  "$project/package.json")
run "resolve from scratch, cold" install "${common[@]}"
rm -rf "$work/project/node_modules" "$work/store"
run "cold frozen install" install --frozen-lockfile "${common[@]}"
rm -rf "$work/project/node_modules"
run "warm frozen install" install --frozen-lockfile "${common[@]}"
run "no-op" install --frozen-lockfile "${common[@]}"
if [[ -n $first_dep ]]; then
  cp "$work/project/package.json" "$work/package.json"
  run "remove $first_dep" remove "$first_dep" "${registry[@]}"
  cp "$work/package.json" "$work/project/package.json"
  run "install after an edit" install "${common[@]}"
fi
rm -f "$work/project/pnpm-lock.yaml"
run "resolve only, cached metadata" install --lockfile-only "${common[@]}"

"$profdata" merge -o "$out/flowpm.profdata" "$profiles"
log "optimised build (target/pgo/release/flowpm)"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$out/flowpm.profdata" CARGO_TARGET_DIR=$out \
  cargo build --release -p flowpm
log "built $out/release/flowpm"
