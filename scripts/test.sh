#!/usr/bin/env bash
# Every test: unit tests, the pipeline runtime's contract tests, and the integration tests that
# drive the flowpm binary against the loopback fixture registry (hermetic: no other network).
# Needs only the Rust toolchain; node, when present, is used to check that `require` works.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
