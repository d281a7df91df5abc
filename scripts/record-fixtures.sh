#!/usr/bin/env bash
# Records pnpm's output for the fixture projects, so hermetic tests can compare flowpm with it.
#
# For each fixtures/projects/<name> with a package.json and no `realworld`/`example` data, this
# serves fixtures/registry on loopback, lets pnpm 12 resolve and install the project against it,
# and keeps pnpm-lock.yaml and pnpm-tree.txt (the canonical listing of pnpm's node_modules, see
# fixtures/src/manifest.rs). Run it after changing fixtures/src/scenario.rs (and regenerating
# fixtures/registry) or the projects. Needs pnpm (PNPM, default /tmp/peers/node_modules/.bin/pnpm).
set -euo pipefail
cd "$(dirname "$0")/.."
PNPM=${PNPM:-/tmp/peers/node_modules/.bin/pnpm}
[[ -x "$PNPM" ]] || npm install --prefix /tmp/peers pnpm >/dev/null
cargo build -q -p flowpm-fixtures --bin flowpm-fixtures
fixtures=target/debug/flowpm-fixtures
work=$(mktemp -d)
url_file="$work/url"
"$fixtures" serve fixtures/registry >"$url_file" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do [[ -s "$url_file" ]] && break; sleep 0.1; done
registry=$(cat "$url_file")
echo "fixture registry: $registry"
for project in "${@:-graph}"; do
  dir=fixtures/projects/$project
  copy="$work/$project"
  mkdir -p "$copy"
  # The project's files (for a workspace: pnpm-workspace.yaml, its projects and their files,
  # such as bins), without pnpm's earlier output.
  (cd "$dir" && find . -name node_modules -prune -o -type f ! -name pnpm-lock.yaml ! -name pnpm-tree.txt ! -name make-git-repos.sh -print) |
    while read -r file; do mkdir -p "$copy/$(dirname "$file")"; cp "$dir/$file" "$copy/$file"; done
  # A project with git dependencies builds its repositories and points their fixed URLs
  # (git://git.fixture.invalid/...) at them, as the tests do.
  if [[ -x "$dir/make-git-repos.sh" ]]; then
    "$dir/make-git-repos.sh" "$work/git-$project"
    export GIT_CONFIG_COUNT=2
    export GIT_CONFIG_KEY_0="url.file://$work/git-$project/.insteadOf" GIT_CONFIG_VALUE_0=git://git.fixture.invalid/
    export GIT_CONFIG_KEY_1="url.file://$work/git-$project/.insteadOf" GIT_CONFIG_VALUE_1=ssh://git@git.fixture.invalid/
  fi
  # Scripts run only for a project that allows builds (its tree is then the built one).
  scripts=--ignore-scripts
  grep -qs '^allowBuilds:' "$dir/pnpm-workspace.yaml" && scripts=
  (cd "$copy" && "$PNPM" install --registry "$registry" --store-dir "$work/store" --cache-dir "$work/cache" \
      $scripts --reporter=silent)
  cp "$copy/pnpm-lock.yaml" "$dir/pnpm-lock.yaml"
  "$fixtures" manifest "$copy" >"$dir/pnpm-tree.txt"
  echo "$project: $(grep -c . "$dir/pnpm-tree.txt") entries recorded"
  unset GIT_CONFIG_COUNT GIT_CONFIG_KEY_0 GIT_CONFIG_VALUE_0 GIT_CONFIG_KEY_1 GIT_CONFIG_VALUE_1
done
