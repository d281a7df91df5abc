#!/usr/bin/env bash
# Regenerates stages/data/compat-db.json, pnpm's built-in compatibility database: the
# package extensions of the npm package @yarnpkg/extensions (BSD-2-Clause, Yarn
# Contributors; see stages/data/NOTICE), which pnpm applies to every manifest unless
# `ignoreCompatibilityDb` is set. pnpm 12.21.0 embeds version 2.0.7 of it with the two
# `gatsby-core-utils@<2.14.0-next.1` entries merged into one and the entries sorted by
# selector; this script writes the same.
#
# Usage: scripts/compat-db.sh [version]   (default 2.0.7; fetched from the configured
# npm registry with `npm pack`; needs node and npm)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-2.0.7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@yarnpkg/extensions@$version" >/dev/null && tar xzf ./*.tgz)
node - "$work/package/lib/index.js" >stages/data/compat-db.json <<'JS'
const { packageExtensions } = require(process.argv[2]);
// One entry per selector, in first-seen order; a repeated selector's fields are merged.
const merged = new Map();
for (const [selector, extension] of packageExtensions) {
  const entry = merged.get(selector) ?? {};
  for (const [field, value] of Object.entries(extension)) {
    entry[field] = { ...(entry[field] ?? {}), ...value };
  }
  merged.set(selector, entry);
}
// Sorted by selector in locale order, as pnpm 12 embeds it (for one package, the first
// matching entry wins).
const sorted = [...merged].sort(([a], [b]) => a.localeCompare(b, "en"));
process.stdout.write(JSON.stringify(sorted, null, 1) + "\n");
JS
echo "stages/data/compat-db.json: $(node -e 'console.log(require("./stages/data/compat-db.json").length)') selectors from @yarnpkg/extensions@$version"
