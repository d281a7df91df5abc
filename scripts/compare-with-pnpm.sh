#!/usr/bin/env bash
# compare-with-pnpm.sh — install one project with pnpm and with flowpm, then
# check that both produced exactly the same node_modules tree.
#
# Usage:
#   scripts/compare-with-pnpm.sh <project-dir> [flowpm-binary]
#
#   <project-dir>    a directory holding package.json and pnpm-lock.yaml
#                    (e.g. fixtures/projects/example)
#   [flowpm-binary]  defaults to target/release/flowpm in this repository
#
# Environment:
#   PNPM          pnpm executable to use as the reference
#                 (default /tmp/peers/node_modules/.bin/pnpm; installed there
#                 with `npm install --prefix /tmp/peers pnpm` when missing)
#   KEEP_WORK=1   keep the whole work dir (both trees and stores) afterwards;
#                 by default only the manifests, logs and the diff are kept
#   IGNORE_BIN_SHIM_CONTENT=1
#                 compare files under any `.bin/` directory by presence and
#                 exec bit only, not by content (useful while flowpm's shims
#                 are not yet byte-identical to pnpm's)
#   TMPDIR        where the work dir is created (default /tmp)
#
# Both tools get the registry from the user's normal npm/pnpm configuration
# (`npm config get registry`); nothing here names a registry host.
#
# What is compared: every path under the project copy (so node_modules/** plus
# any file a tool leaves or rewrites next to package.json), each with
#   - its type: d (directory), f (regular file), l (symlink), o (other)
#   - for symlinks: the readlink target, verbatim
#   - for regular files: sha256 of the content and whether any x bit is set
# minus the bookkeeping files pnpm writes that are not package content:
#   node_modules/.modules.yaml               (install state; JSON despite its name)
#   node_modules/.pnpm-workspace-state*.json (settings + absolute project paths)
#   node_modules/.pnpm/lock.yaml             (copy of the lockfile it installed)
#   any other `.modules.yaml`                (written for nested installs)
# Those were found by listing, in a pnpm-installed tree, every regular file that
# is not hard-linked from the content-addressable store (link count 1): apart
# from the three files above, they are only the generated `.bin` shims and
# packages that pnpm copies instead of linking because they declare build
# scripts (e.g. esbuild, es5-ext, sharp) — both of which ARE compared.
#
# If a file's content contains the absolute path of its own project copy, that
# path is replaced with "<ROOT>" before hashing, so the two temp dirs' differing
# locations can't by themselves cause a difference (pnpm 12's shims use only
# relative paths, so in practice this never triggers for pnpm).
#
# Exit status: 0 when the trees are identical, 1 when they differ, 2 when an
# install or the setup fails.
set -euo pipefail

usage() {
  # Print this file's header comment (line 2 up to the first non-comment line).
  sed -n '2,/^[^#]/p' "$0" | sed -n 's/^# \{0,1\}//p'
  exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
[[ "$1" != "-h" && "$1" != "--help" ]] || usage

# --- arguments and tools ----------------------------------------------------

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

PROJECT_DIR="$(cd "$1" 2>/dev/null && pwd)" || { echo "error: no such directory: $1" >&2; exit 2; }
for f in package.json pnpm-lock.yaml; do
  [[ -f "$PROJECT_DIR/$f" ]] || { echo "error: $PROJECT_DIR/$f is missing" >&2; exit 2; }
done

FLOWPM="${2:-$REPO_ROOT/target/release/flowpm}"
# Resolve a relative path (or bare command name) to an absolute one, since
# the installs run from other directories.
if [[ "$FLOWPM" == */* ]]; then
  FLOWPM="$(cd "$(dirname "$FLOWPM")" 2>/dev/null && pwd)/$(basename "$FLOWPM")" || FLOWPM=""
else
  FLOWPM="$(command -v "$FLOWPM" || true)"
fi
[[ -n "$FLOWPM" && -x "$FLOWPM" ]] || {
  echo "error: flowpm binary not found or not executable: ${2:-$REPO_ROOT/target/release/flowpm}" >&2
  echo "       build it with 'cargo build --release' or pass its path as 2nd argument" >&2
  exit 2
}

DEFAULT_PNPM=/tmp/peers/node_modules/.bin/pnpm
PNPM="${PNPM:-$DEFAULT_PNPM}"
if [[ ! -x "$PNPM" ]]; then
  if [[ "$PNPM" == "$DEFAULT_PNPM" ]]; then
    echo "pnpm not found at $PNPM; installing it with npm into /tmp/peers ..." >&2
    npm install --prefix /tmp/peers pnpm >&2
  fi
  [[ -x "$PNPM" ]] || { echo "error: pnpm not executable: $PNPM" >&2; exit 2; }
fi

command -v python3 >/dev/null || { echo "error: python3 is required" >&2; exit 2; }

# --- work dir ---------------------------------------------------------------
# Layout:
#   $WORK/pnpm/project    project copy installed by pnpm
#   $WORK/flowpm/project  project copy installed by flowpm
#   $WORK/pnpm-store, $WORK/pnpm-cache, $WORK/flowpm-store   fresh stores
#   $WORK/*.manifest, $WORK/*.log, $WORK/diff.txt            kept afterwards
# Both copies are called "project" so nothing that embeds the directory name
# can differ between them.

WORK="$(mktemp -d "${TMPDIR:-/tmp}/compare-with-pnpm.XXXXXX")"
cleanup() {
  if [[ "${KEEP_WORK:-0}" != 1 ]]; then
    # The trees and stores are large; the manifests, logs and diff are not.
    rm -rf "$WORK/pnpm" "$WORK/flowpm" "$WORK/pnpm-store" "$WORK/pnpm-cache" \
           "$WORK/flowpm-store"
  fi
}
trap cleanup EXIT

for side in pnpm flowpm; do
  mkdir -p "$WORK/$side/project"
  cp "$PROJECT_DIR/package.json" "$PROJECT_DIR/pnpm-lock.yaml" "$WORK/$side/project/"
  # Settings that change the layout (hoisting, node-linker, ...) live in these;
  # copy them when the project has them so both tools see the same settings.
  for extra in .npmrc pnpm-workspace.yaml; do
    if [[ -f "$PROJECT_DIR/$extra" ]]; then
      cp "$PROJECT_DIR/$extra" "$WORK/$side/project/"
    fi
  done
done

echo "project:  $PROJECT_DIR"
echo "pnpm:     $PNPM ($("$PNPM" --version 2>/dev/null || echo '?'))"
echo "flowpm:   $FLOWPM"
echo "registry: $(npm config get registry 2>/dev/null || echo '?')"
echo "work dir: $WORK"

# --- installs ----------------------------------------------------------------

# run_install <side> <command...>: run an install in $WORK/<side>/project,
# log to $WORK/<side>.log, print how long it took, abort (exit 2) on failure.
run_install() {
  local side="$1"; shift
  local log="$WORK/$side.log" start ms
  start=$(date +%s%N)
  if ! (cd "$WORK/$side/project" && "$@") >"$log" 2>&1; then
    echo "error: $side install failed; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 2
  fi
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf '%-6s install: %d.%03ds\n' "$side" $((ms / 1000)) $((ms % 1000))
}

run_install pnpm "$PNPM" install --frozen-lockfile --ignore-scripts \
  --store-dir "$WORK/pnpm-store" --cache-dir "$WORK/pnpm-cache"

run_install flowpm "$FLOWPM" install --frozen-lockfile --ignore-scripts \
  --store-dir "$WORK/flowpm-store"

# --- manifests and diff --------------------------------------------------------
# One python3 program does both jobs:
#   manifest <project-root> <out-file>   write the sorted manifest
#   diff <a-manifest> <b-manifest>       compare two manifests, print summary
# Manifest lines are "<path>\t<type>[\t<detail>...]" with path relative to the
# project copy; tabs, newlines and backslashes in names are escaped.
# Hashing runs in a thread pool (hashlib and file reads release the GIL), so
# ~50k files / ~700 MB take a few seconds on 2 cores.

PY="$WORK/manifest.py"
cat >"$PY" <<'PYEOF'
import hashlib, os, re, stat, sys, time
from concurrent.futures import ThreadPoolExecutor

# Files pnpm writes for its own bookkeeping (not package content). Paths are
# relative to the project copy.
EXCLUDE_EXACT = {
    "node_modules/.modules.yaml",
    "node_modules/.pnpm/lock.yaml",
}
EXCLUDE_RE = [
    re.compile(r"^node_modules/\.pnpm-workspace-state[^/]*\.json$"),
    re.compile(r"(^|/)\.modules\.yaml$"),
]

def excluded(rel):
    return rel in EXCLUDE_EXACT or any(r.search(rel) for r in EXCLUDE_RE)

def esc(s):
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

def manifest(root, out):
    t0 = time.monotonic()
    root = os.path.abspath(root)
    root_b = os.fsencode(root)
    ignore_bin = os.environ.get("IGNORE_BIN_SHIM_CONTENT") == "1"
    entries = {}   # rel path -> list of fields
    files = []     # (rel, abs) of regular files still to hash

    def walk(absdir, reldir):
        with os.scandir(absdir) as it:
            for e in it:
                rel = e.name if not reldir else reldir + "/" + e.name
                if excluded(rel):
                    continue
                st = e.stat(follow_symlinks=False)
                m = st.st_mode
                if stat.S_ISLNK(m):
                    entries[rel] = ["l", os.readlink(e.path)]
                elif stat.S_ISDIR(m):
                    entries[rel] = ["d"]
                    walk(e.path, rel)
                elif stat.S_ISREG(m):
                    entries[rel] = ["f", None, "x" if m & 0o111 else "-"]
                    files.append((rel, e.path))
                else:
                    entries[rel] = ["o", oct(stat.S_IFMT(m))]

    walk(root, "")
    normalized = []

    def digest(item):
        rel, path = item
        if ignore_bin and re.search(r"(^|/)\.bin/", rel):
            return rel, "(bin shim content not compared)"
        with open(path, "rb") as fh:
            data = fh.read()
        if root_b in data:
            data = data.replace(root_b, b"<ROOT>")
            normalized.append(rel)
        return rel, hashlib.sha256(data).hexdigest()

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for rel, h in pool.map(digest, files, chunksize=64):
            entries[rel][1] = h

    with open(out, "w", encoding="utf-8", errors="surrogateescape") as fh:
        for rel in sorted(entries):
            fh.write("\t".join([esc(rel)] + entries[rel]) + "\n")
    note = f", {len(normalized)} with the project path normalized" if normalized else ""
    print(f"manifest {out}: {len(entries)} entries ({len(files)} files{note}) "
          f"in {time.monotonic() - t0:.1f}s")

def load(path):
    d = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            rel, _, rest = line.rstrip("\n").partition("\t")
            d[rel] = rest
    return d

def describe(rest):
    f = rest.split("\t")
    if f[0] == "f":
        return f"file sha256={f[1][:16]}{'…' if len(f[1]) > 16 else ''} exec={'yes' if f[2] == 'x' else 'no'}"
    if f[0] == "l":
        return f"symlink -> {f[1]}"
    if f[0] == "d":
        return "directory"
    return "other " + " ".join(f[1:])

def diff(a_path, b_path, a_name="pnpm", b_name="flowpm", limit=50):
    a, b = load(a_path), load(b_path)
    paths = sorted(set(a) | set(b))
    diffs = []
    for p in paths:
        ra, rb = a.get(p), b.get(p)
        if ra == rb:
            continue
        if rb is None:
            diffs.append(f"only in {a_name}:   {p}  ({describe(ra)})")
        elif ra is None:
            diffs.append(f"only in {b_name}: {p}  ({describe(rb)})")
        else:
            diffs.append(f"differs:        {p}\n    {a_name}:   {describe(ra)}\n    {b_name}: {describe(rb)}")
    only_a = sum(1 for p in paths if p not in b)
    only_b = sum(1 for p in paths if p not in a)
    print(f"entries compared: {len(paths)} ({a_name}: {len(a)}, {b_name}: {len(b)})")
    print(f"entries differing: {len(diffs)} (only in {a_name}: {only_a}, only in {b_name}: {only_b}, "
          f"different: {len(diffs) - only_a - only_b})")
    if diffs:
        print(f"first {min(limit, len(diffs))} differences:")
        for d in diffs[:limit]:
            print("  " + d)
    return 1 if diffs else 0

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "manifest":
        manifest(sys.argv[2], sys.argv[3])
    elif cmd == "diff":
        sys.exit(diff(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(f"unknown command {cmd}")
PYEOF

# Manifests of the two trees, one after the other: each already uses both cores.
python3 "$PY" manifest "$WORK/pnpm/project" "$WORK/pnpm.manifest"
python3 "$PY" manifest "$WORK/flowpm/project" "$WORK/flowpm.manifest"

echo
status=0
python3 "$PY" diff "$WORK/pnpm.manifest" "$WORK/flowpm.manifest" | tee "$WORK/diff.txt" || status=$?
# (with pipefail, $status is python's exit code: 1 when the trees differ)

echo
if [[ $status -eq 0 ]]; then
  echo "RESULT: identical trees"
else
  echo "RESULT: trees differ (manifests and full output kept in $WORK)"
fi
exit "$status"
