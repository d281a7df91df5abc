#!/usr/bin/env bash
# Every test: unit tests, the pipeline runtime's contract tests, the integration tests that
# drive the flowpm binary against the loopback fixture registry (hermetic: no other network),
# then a bounded fuzzing run of the lockfile parser and the tarball decoder.
# Needs only the Rust toolchain (cargo-fuzz is installed from crates.io if missing); node, when
# present, is used to check that `require` works; root lets the disk-full tests mount a tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
