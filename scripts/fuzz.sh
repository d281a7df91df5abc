#!/usr/bin/env bash
# Fuzzes the lockfile parser/planner and the tarball decoder/entry-path validator for a bounded
# time each (default 30 s; `scripts/fuzz.sh 600` for a longer run), from the seeds in
# stages/fuzz/seeds. A crash leaves its input in stages/fuzz/artifacts and fails the script.
set -euo pipefail
cd "$(dirname "$0")/../stages"
seconds=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo fuzz passes nightly-only flags; the machines have one stable toolchain.
export RUSTC_BOOTSTRAP=1
for target in lockfile tarball packument; do
  corpus=$(mktemp -d)
  cp fuzz/seeds/"$target"/* "$corpus"/
  cargo fuzz run --sanitizer none "$target" "$corpus" -- -max_total_time="$seconds" 2>&1 | tail -n 1
  rm -rf "$corpus"
done
