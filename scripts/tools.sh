# Sourced by mirror.sh and bench.sh: where the repository, flowpm and the peers are.
# Override any of FLOWPM, PNPM, BUN, UTOO, PEERS from the environment.
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
PEERS=${PEERS:-/tmp/peers}
FLOWPM=${FLOWPM:-$REPO_DIR/target/release/flowpm}
PNPM=${PNPM:-$PEERS/node_modules/.bin/pnpm}
BUN=${BUN:-$PEERS/node_modules/.bin/bun}
# utoo's npm package is a node launcher around a native binary; call the binary directly.
UTOO_NATIVE=$PEERS/node_modules/@utoo/utoo-linux-x64/bin/utoo
if [[ -z ${UTOO:-} ]]; then
  if [[ -x $UTOO_NATIVE ]]; then UTOO=$UTOO_NATIVE; else UTOO=$PEERS/node_modules/.bin/utoo; fi
fi

# check_tree <project-copy>: every direct (dev)dependency of package.json is in node_modules;
# prints what is missing (and fails) otherwise.
check_tree() {
  python3 - "$1" <<'PY'
import json, os, sys
d = sys.argv[1]
pkg = json.load(open(os.path.join(d, "package.json")))
names = [n for k in ("dependencies", "devDependencies") for n in pkg.get(k, {})]
missing = [n for n in names if not os.path.exists(os.path.join(d, "node_modules", n, "package.json"))]
if missing:
    print("missing from node_modules: " + " ".join(missing[:10]))
    sys.exit(1)
PY
}
