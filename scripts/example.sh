#!/usr/bin/env bash
# The main job: build flowpm and install the small real example project in fixtures/projects/example
# from the configured registry (--registry, npm_config_registry, .npmrc, else `npm config get registry`).
# Extra arguments go to `flowpm install` (e.g. --store-dir /tmp/store).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p flowpm
cd fixtures/projects/example
../../../target/release/flowpm install --frozen-lockfile "$@"
ls node_modules node_modules/.bin
