#!/usr/bin/env bash
# Loopback npm mirror of one project's dependency graph, for benchmarks (scripts/bench.sh).
#
# Usage:
#   scripts/mirror.sh <project-dir> <mirror-dir> [port]    record (once) + serve + verify  (= `build`)
#   scripts/mirror.sh build  <project-dir> <mirror-dir> [port]
#   scripts/mirror.sh serve  <mirror-dir> [port]   start nginx on 127.0.0.1:<port> (default: the recorded port)
#   scripts/mirror.sh stop   <mirror-dir>          stop that nginx
#   scripts/mirror.sh verify <mirror-dir>          install with every tool from the mirror alone
#   scripts/mirror.sh url    <mirror-dir>          print the mirror's registry URL
#   scripts/mirror.sh status <mirror-dir>
#
# How the mirror is recorded
#   A small pass-through recorder (Python stdlib, written to <mirror-dir>/tools/) listens on
#   127.0.0.1:<port>, the port nginx will use later. Every tool is run against it once, exactly
#   as the benchmark will run it, plus the resolutions that produce the peers' own lockfiles:
#     flowpm install --frozen-lockfile          (pnpm-lock.yaml: tarballs)
#     pnpm install --frozen-lockfile            (same, as pnpm computes the URLs)
#     pnpm install --lockfile-only, no lockfile (packuments pnpm needs to resolve from scratch)
#     bun install --lockfile-only  -> bun.lock, then bun install --frozen-lockfile (tarballs)
#     utoo deps -> package-lock.json, then utoo install (tarballs)
#     each tool's install without a lockfile (p0: what a fresh resolution downloads)
#   The recorder answers every packument request with the FULL JSON document from the upstream
#   registry (`npm config get registry`, or $REGISTRY), whatever the Accept header, and every
#   tarball request with the upstream tarball; it stores each once and serves later requests from
#   disk. Anything else (search, audit, ...) is passed through unstored and logged as PASSTHRU.
#   `dist.tarball` URLs in stored packuments are rewritten to __FLOWPM_MIRROR_BASE__/<name>/-/<file>;
#   the placeholder is replaced by http://127.0.0.1:<port> when the mirror is rendered for serving.
#   The bun.lock / package-lock.json generated during recording are kept (with the same
#   placeholder) under <mirror-dir>/src/lockfiles and rendered to <mirror-dir>/lockfiles/, so the
#   benchmark's p3/p4/noop start from each tool's own lockfile. They are generated ONCE: a rebuild
#   reuses them (FORCE_LOCKFILES=1 regenerates them; FORCE=1 re-runs the recording pass).
#
# Layout of <mirror-dir>
#   project/            package.json + pnpm-lock.yaml the mirror was recorded for
#   src/packuments/     <name>/index.json (full packuments, placeholder URLs); <name>/tarballs.json
#   src/lockfiles/      bun.lock, package-lock.json (placeholder URLs)
#   www/                nginx root: <name>/index.json (rendered) and <name>/-/<file>.tgz
#   lockfiles/          bun.lock, package-lock.json rendered for the served port
#   nginx/              nginx.conf, pid, logs, temp dirs;  record/  recorder logs;  port
#
# How it is served
#   nginx (Debian package, installed if missing) as the current user, daemonized, with its
#   config/pid/logs/temp paths inside <mirror-dir>/nginx, sendfile on, keep-alive on.
#   nginx decodes %XX in $uri, so `/@scope%2fname`, `/@scope%2Fname` and `/@scope/name` all map to
#   www/@scope/name/index.json (`try_files $uri/index.json $uri`), served as application/json.
#
# `verify` runs, when `unshare -n` works, inside a new network namespace that has only loopback:
# a private nginx serves the mirror there, so any request to anything but the mirror fails.
#
# Environment: FLOWPM (default target/release/flowpm), PNPM, BUN, UTOO (default: the peers under
# /tmp/peers), REGISTRY (upstream, default `npm config get registry`), MIRROR_PORT (default 4873),
# TOOL_TIMEOUT (seconds per tool run, default 900).
set -euo pipefail

# shellcheck source=tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
DEFAULT_PORT=${MIRROR_PORT:-4873}
TOOL_TIMEOUT=${TOOL_TIMEOUT:-900}
PLACEHOLDER=__FLOWPM_MIRROR_BASE__

log() { printf '[mirror] %s\n' "$*" >&2; }
die() { printf '[mirror] error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# --- prerequisites ------------------------------------------------------------------------------

nginx_bin() {
  if command -v nginx >/dev/null 2>&1; then command -v nginx; elif [[ -x /usr/sbin/nginx ]]; then echo /usr/sbin/nginx; fi
}

ensure_nginx() {
  [[ -n $(nginx_bin) ]] && return 0
  log "installing nginx from Debian"
  local sudo=(); [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >&2
  [[ -n $(nginx_bin) ]] || die "nginx is not installed"
}

ensure_peers() {
  if [[ ! -x $PNPM || ! -x $BUN || ! -x $UTOO ]]; then
    log "installing peers into $PEERS (npm install --prefix $PEERS pnpm bun utoo)"
    npm install --prefix "$PEERS" pnpm bun utoo >&2
    [[ -x $UTOO_NATIVE ]] && UTOO=$UTOO_NATIVE
  fi
}

# The upstream registry: $REGISTRY, else npm's configured registry. Always ends with '/'.
upstream_registry() {
  local r=${REGISTRY:-}
  [[ -n $r ]] || r=$(npm config get registry 2>/dev/null)
  [[ -n $r ]] || die "no registry: set REGISTRY or configure npm"
  echo "${r%/}/"
}

mirror_port() { # <mirror-dir> [port]: explicit port, else the recorded one, else the default
  if [[ -n ${2:-} ]]; then echo "$2"
  elif [[ -s $1/port ]]; then cat "$1/port"
  else echo "$DEFAULT_PORT"; fi
}

port_in_use() { # <port>: something accepts connections on 127.0.0.1:<port>
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- the Python helper: recorder (pass-through proxy) and renderer -------------------------------

write_helper() { # <mirror-dir>
  mkdir -p "$1/tools"
  cat >"$1/tools/mirror_helper.py" <<'PY'
"""flowpm benchmark mirror helper (written by scripts/mirror.sh; do not edit here).

  record  --root DIR --upstream URL --port N   pass-through recorder on 127.0.0.1:N
  render  --root DIR --base URL                src/ (placeholder URLs) -> www/ and lockfiles/
"""
import argparse, http.client, json, os, re, sys, tempfile, threading, time
import urllib.parse, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PLACEHOLDER = "__FLOWPM_MIRROR_BASE__"
TARBALL_RE = re.compile(r"^/((?:@[^/]+/)?[^/@][^/]*)/-/([^/]+)$")
DOC_RE = re.compile(r"^/((?:@[^/]+/)?[^/@][^/]*)(?:/([^/]+))?/?$")


def atomic_write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class Upstream:
    """GET from the upstream registry, one persistent connection per handler thread."""

    def __init__(self, base):
        self.base = base.rstrip("/")
        u = urllib.parse.urlsplit(self.base)
        self.scheme, self.host, self.port, self.prefix = u.scheme, u.hostname, u.port, u.path
        self.local = threading.local()

    def _conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            c = cls(self.host, self.port, timeout=180)
            self.local.c = c
        return c

    def get(self, url, accept="application/json"):
        """url: absolute, or a path ('/x') below the upstream base. Returns (status, body, ctype)."""
        if url.startswith("/"):
            url = self.base + url
        headers = {"Accept": accept, "Accept-Encoding": "identity", "User-Agent": "flowpm-mirror-recorder"}
        for attempt in range(5):
            try:
                if not url.startswith(self.base + "/"):  # another host: plain urllib (follows redirects)
                    req = urllib.request.Request(url, headers=headers)
                    try:
                        with urllib.request.urlopen(req, timeout=180) as r:
                            return r.status, r.read(), r.headers.get("Content-Type")
                    except urllib.error.HTTPError as e:
                        return e.code, e.read(), e.headers.get("Content-Type")
                c = self._conn()
                c.request("GET", self.prefix + url[len(self.base):], headers=headers)
                r = c.getresponse()
                body = r.read()
                if r.status in (301, 302, 303, 307, 308) and r.getheader("Location"):
                    url = urllib.parse.urljoin(url, r.getheader("Location"))
                    continue
                if r.status >= 500 and attempt < 4:
                    raise OSError("upstream %d" % r.status)
                return r.status, body, r.getheader("Content-Type")
            except (http.client.HTTPException, OSError):
                c = getattr(self.local, "c", None)
                if c is not None:
                    c.close()
                self.local.c = None
                if attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise OSError("too many redirects: " + url)


class Recorder:
    def __init__(self, root, upstream, base):
        self.root, self.up, self.base = root, Upstream(upstream), base.rstrip("/")
        self.src = os.path.join(root, "src", "packuments")
        self.www = os.path.join(root, "www")
        self.locks, self.locks_guard, self.log_guard = {}, threading.Lock(), threading.Lock()
        os.makedirs(os.path.join(root, "record"), exist_ok=True)
        self.logf = open(os.path.join(root, "record", "requests.log"), "a", buffering=1)

    def lock(self, key):
        with self.locks_guard:
            return self.locks.setdefault(key, threading.Lock())

    def log(self, *fields):
        with self.log_guard:
            self.logf.write(" ".join(str(f) for f in fields) + "\n")

    def render(self, data):
        return data.replace(PLACEHOLDER.encode(), self.base.encode())

    # -- packuments (and version documents /name/<version-or-tag>) --
    def doc(self, name, ver):
        rel = os.path.join(name, ver, "index.json") if ver else os.path.join(name, "index.json")
        path = os.path.join(self.src, rel)
        with self.lock(path):
            if os.path.exists(path):
                with open(path, "rb") as f:
                    return 200, self.render(f.read()), "cache"
            upath = "/" + urllib.parse.quote(name, safe="@").replace("/", "%2f")
            if ver:
                upath += "/" + urllib.parse.quote(ver, safe="")
            status, body, _ = self.up.get(upath, "application/json")
            if status != 200:
                return status, body, "upstream-miss"
            doc = json.loads(body)
            tarballs = {}
            for v in ([doc] if ver else doc.get("versions", {}).values()):
                dist = v.get("dist") if isinstance(v, dict) else None
                if not isinstance(dist, dict) or not isinstance(dist.get("tarball"), str):
                    continue
                orig = dist["tarball"]
                fname = urllib.parse.unquote(urllib.parse.urlsplit(orig).path.rsplit("/", 1)[-1])
                tarballs[fname] = orig
                dist["tarball"] = "%s/%s/-/%s" % (PLACEHOLDER, name, fname)
            data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
            tb_path = os.path.join(self.src, name, "tarballs.json")
            if tarballs and not ver:
                atomic_write(tb_path, json.dumps(tarballs, indent=0).encode())
            atomic_write(path, data)
            return 200, self.render(data), "upstream"

    # -- tarballs --
    def tarball(self, name, fname):
        path = os.path.join(self.www, name, "-", fname)
        with self.lock(path):
            if os.path.exists(path):
                with open(path, "rb") as f:
                    return 200, f.read(), "cache"
            url = None
            tb_path = os.path.join(self.src, name, "tarballs.json")
            if os.path.exists(tb_path):
                with open(tb_path) as f:
                    url = json.load(f).get(fname)
            if url is None:  # pnpm/flowpm compute <registry>/<name>/-/<file> from the lockfile
                url = "/%s/-/%s" % (name, urllib.parse.quote(fname))
            status, body, _ = self.up.get(url, "application/octet-stream")
            if status != 200:
                return status, body, "upstream-miss"
            atomic_write(path, body)
            return 200, body, "upstream"


def make_handler(rec):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status, body, ctype, head):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def handle_any(self, head):
            raw = self.path
            path = urllib.parse.unquote(raw.split("?", 1)[0])
            try:
                if path == "/-/flowpm-mirror/ping":
                    return self.send(200, b"pong\n", "text/plain", head)
                if path.startswith("/-/flowpm-mirror/mark/"):
                    rec.log("MARK", path.rsplit("/", 1)[-1])
                    return self.send(200, b"ok\n", "text/plain", head)
                m = TARBALL_RE.match(path)
                if m:
                    status, body, src = rec.tarball(m.group(1), m.group(2))
                    ctype = "application/octet-stream"
                elif not path.startswith("/-/") and DOC_RE.match(path):
                    m = DOC_RE.match(path)
                    status, body, src = rec.doc(m.group(1), m.group(2))
                    ctype = "application/json"
                else:
                    status, body, ctype = rec.up.get(raw, self.headers.get("Accept", "*/*"))
                    src, ctype = "PASSTHRU", ctype or "application/octet-stream"
            except Exception as e:  # report, answer 502, keep serving
                rec.log("ERROR", self.command, raw, repr(e))
                return self.send(502, repr(e).encode(), "text/plain", head)
            rec.log(self.command, raw, status, len(body), src)
            self.send(status, body, ctype, head)

        def do_GET(self):
            self.handle_any(False)

        def do_HEAD(self):
            self.handle_any(True)

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def cmd_record(a):
    base = "http://127.0.0.1:%d" % a.port
    rec = Recorder(a.root, a.upstream, base)
    srv = Server(("127.0.0.1", a.port), make_handler(rec))
    print("recording %s -> %s" % (a.upstream, base), flush=True)
    srv.serve_forever()


def cmd_render(a):
    """Render src/ with the placeholder replaced by the base URL; skip files already current."""
    base = a.base.rstrip("/").encode()
    stamp = os.path.join(a.root, "www", ".rendered-base")
    old = open(stamp, "rb").read() if os.path.exists(stamp) else b""
    full = old != base
    count = 0
    for sub, dest in (("packuments", "www"), ("lockfiles", "lockfiles")):
        top = os.path.join(a.root, "src", sub)
        for dirpath, _, files in os.walk(top):
            for fn in files:
                if fn.startswith(".tmp-") or fn == "tarballs.json":
                    continue
                s = os.path.join(dirpath, fn)
                d = os.path.join(a.root, dest, os.path.relpath(s, top))
                if not full and os.path.exists(d) and os.path.getmtime(d) >= os.path.getmtime(s):
                    continue
                with open(s, "rb") as f:
                    atomic_write(d, f.read().replace(PLACEHOLDER.encode(), base))
                count += 1
    atomic_write(stamp, base)
    print("rendered %d files for %s" % (count, base.decode()))


def main():
    p = argparse.ArgumentParser()
    sp = p.add_subparsers(dest="cmd", required=True)
    r = sp.add_parser("record")
    r.add_argument("--root", required=True)
    r.add_argument("--upstream", required=True)
    r.add_argument("--port", type=int, required=True)
    r.set_defaults(fn=cmd_record)
    r = sp.add_parser("render")
    r.add_argument("--root", required=True)
    r.add_argument("--base", required=True)
    r.set_defaults(fn=cmd_render)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
PY
}

# --- nginx --------------------------------------------------------------------------------------

write_nginx_conf() { # <mirror-dir> <name> <port>: writes <mirror-dir>/nginx/<name>.conf
  local m=$1 name=$2 port=$3 d=$1/nginx
  mkdir -p "$d/tmp-$name"
  local user_line=""
  # When started as root, nginx would switch its workers to `nobody`: keep them as root.
  [[ $(id -u) -eq 0 ]] && user_line="user root;"
  cat >"$d/$name.conf" <<EOF
# Written by scripts/mirror.sh: serves $m/www on 127.0.0.1:$port.
$user_line
worker_processes auto;
pid $d/$name.pid;
error_log $d/$name-error.log warn;
events { worker_connections 4096; }
http {
    types { application/json json; application/octet-stream tgz; }
    default_type application/octet-stream;
    access_log $d/$name-access.log;
    client_body_temp_path $d/tmp-$name/client;
    proxy_temp_path $d/tmp-$name/proxy;
    fastcgi_temp_path $d/tmp-$name/fastcgi;
    uwsgi_temp_path $d/tmp-$name/uwsgi;
    scgi_temp_path $d/tmp-$name/scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 100000;
    open_file_cache max=20000 inactive=120s;
    server_tokens off;
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $m/www;
        # \$uri is percent-decoded: /@scope%2fname and /@scope/name -> www/@scope/name/index.json;
        # tarballs are plain files at www/<name>/-/<file>.
        location / {
            try_files \$uri/index.json \$uri =404;
        }
        location = /-/flowpm-mirror/ping { default_type text/plain; return 200 "pong\n"; }
    }
}
EOF
}

nginx_pid() { # <mirror-dir> <name>: pid of a running nginx master started from that config
  local f=$1/nginx/$2.pid pid
  [[ -s $f ]] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

nginx_start() { # <mirror-dir> <name> <port>
  local m=$1 name=$2 port=$3
  write_nginx_conf "$m" "$name" "$port"
  "$(nginx_bin)" -t -q -e "$m/nginx/$name-error.log" -p "$m/nginx" -c "$m/nginx/$name.conf" >&2
  "$(nginx_bin)" -e "$m/nginx/$name-error.log" -p "$m/nginx" -c "$m/nginx/$name.conf"
  for _ in $(seq 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/-/flowpm-mirror/ping" 2>/dev/null && return 0
    sleep 0.1
  done
  die "nginx did not come up on 127.0.0.1:$port (see $m/nginx/$name-error.log)"
}

nginx_stop() { # <mirror-dir> <name>
  local pid
  pid=$(nginx_pid "$1" "$2") || return 0
  kill -QUIT "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -TERM "$pid" 2>/dev/null || true
}

render() { # <mirror-dir> <port>
  python3 "$1/tools/mirror_helper.py" render --root "$1" --base "http://127.0.0.1:$2" >&2
}

# --- tool runs ----------------------------------------------------------------------------------

# run_tool <log> <dir> <cmd...>: run with a timeout in <dir>, output to <log>; returns its status.
run_tool() {
  local logf=$1 dir=$2; shift 2
  local rc=0
  # No pnpm self-update check (GET /pnpm): it would depend on pnpm's state in $HOME.
  (cd "$dir" && pnpm_config_update_notifier=false timeout --kill-after=10 "$TOOL_TIMEOUT" "$@") \
    >"$logf" 2>&1 </dev/null || rc=$?
  return "$rc"
}

placeholderize() { # <file> <base-url> <dest>: copy with the base URL replaced by the placeholder
  mkdir -p "$(dirname "$3")"
  python3 - "$1" "$2" "$3" "$PLACEHOLDER" <<'PY'
import sys
src, base, dst, ph = sys.argv[1:5]
data = open(src, "rb").read().replace(base.rstrip("/").encode(), ph.encode())
open(dst, "wb").write(data)
PY
}

# --- build: record + serve + verify --------------------------------------------------------------

inputs_hash() { cat "$1/package.json" "$1/pnpm-lock.yaml" | sha256sum | cut -d' ' -f1; }

cmd_record() { # <project-dir> <mirror-dir> <port>
  local project=$1 m=$2 port=$3
  local upstream; upstream=$(upstream_registry)
  local base="http://127.0.0.1:$port/"
  local hash; hash=$(inputs_hash "$m/project")
  if [[ -z ${FORCE:-} && -s $m/record/complete && $(cat "$m/record/complete") == "$hash" ]]; then
    log "recording is complete for these inputs (FORCE=1 to re-run it)"
    return 0
  fi
  nginx_stop "$m" nginx
  port_in_use "$port" && die "127.0.0.1:$port is in use; stop it or pass another port"

  log "recording from $upstream on $base"
  mkdir -p "$m/record"
  python3 "$m/tools/mirror_helper.py" record --root "$m" --upstream "$upstream" --port "$port" \
    >>"$m/record/recorder.out" 2>&1 &
  local rec_pid=$!
  local work; work=$(mktemp -d "${TMPDIR:-/tmp}/flowpm-mirror-record.XXXXXX")
  # shellcheck disable=SC2064  # expand now: these are this call's values
  trap "kill $rec_pid 2>/dev/null || true; rm -rf '$work'" EXIT
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "${base}-/flowpm-mirror/ping" 2>/dev/null && break
    kill -0 "$rec_pid" 2>/dev/null || die "recorder exited: see $m/record/recorder.out"
    sleep 0.1
  done

  local failed=()
  mark() { curl -fsS -o /dev/null "${base}-/flowpm-mirror/mark/$1" || true; }
  # step <name> <files-to-copy> -- <cmd...>: fresh copy of the project in $work/<name>
  step() {
    local name=$1 files=$2; shift 3
    local dir=$work/$name
    rm -rf "$dir"; mkdir -p "$dir"
    for f in $files; do cp "$m/project/$f" "$dir/" 2>/dev/null || cp "$m/$f" "$dir/"; done
    mark "$name"
    log "  $name: $*"
    local t0=$SECONDS
    if run_tool "$m/record/$name.log" "$dir" "$@"; then
      log "  $name: ok ($((SECONDS - t0)) s)"
    else
      log "  $name: FAILED (status $?, see $m/record/$name.log)"; failed+=("$name")
    fi
  }

  if [[ -x $FLOWPM ]]; then
    step flowpm "package.json pnpm-lock.yaml" -- "$FLOWPM" install --frozen-lockfile --ignore-scripts --registry "$base" \
      --store-dir "$work/flowpm-store" --reporter silent
  else
    log "  flowpm: skipped, no binary at $FLOWPM (set FLOWPM=)"
  fi
  step pnpm "package.json pnpm-lock.yaml" -- "$PNPM" install --frozen-lockfile --ignore-scripts \
    --registry "$base" --store-dir "$work/pnpm-store" --cache-dir "$work/pnpm-cache" --reporter=silent
  step pnpm-resolve "package.json" -- "$PNPM" install --lockfile-only --ignore-scripts \
    --registry "$base" --store-dir "$work/pnpm-store" --cache-dir "$work/pnpm-resolve-cache" --reporter=silent

  # bun: generate bun.lock once (kept under src/lockfiles), then install from it.
  mkdir -p "$m/src/lockfiles"
  if [[ -n ${FORCE_LOCKFILES:-} || ! -s $m/src/lockfiles/bun.lock ]]; then
    step bun-lock "package.json" -- "$BUN" install --lockfile-only --ignore-scripts --registry "$base" \
      --cache-dir "$work/bun-lock-cache" --no-progress
    if [[ -s $work/bun-lock/bun.lock ]]; then
      placeholderize "$work/bun-lock/bun.lock" "$base" "$m/src/lockfiles/bun.lock"
    fi
  fi
  if [[ -s $m/src/lockfiles/bun.lock ]]; then
    render "$m" "$port"
    step bun "package.json lockfiles/bun.lock" -- "$BUN" install --frozen-lockfile --ignore-scripts \
      --registry "$base" --cache-dir "$work/bun-cache" --no-progress
  else
    failed+=(bun-lock)
  fi

  # utoo: generate package-lock.json once, then install from it.
  if [[ -n ${FORCE_LOCKFILES:-} || ! -s $m/src/lockfiles/package-lock.json ]]; then
    step utoo-lock "package.json" -- "$UTOO" deps --registry "$base" --cache-dir "$work/utoo-lock-cache"
    if [[ -s $work/utoo-lock/package-lock.json ]]; then
      placeholderize "$work/utoo-lock/package-lock.json" "$base" "$m/src/lockfiles/package-lock.json"
    fi
  fi
  if [[ -s $m/src/lockfiles/package-lock.json ]]; then
    render "$m" "$port"
    step utoo "package.json lockfiles/package-lock.json" -- "$UTOO" install --ignore-scripts \
      --registry "$base" --cache-dir "$work/utoo-cache"
  else
    failed+=(utoo-lock)
  fi

  # p0 (full cold) as each tool runs it: no lockfile, so a tool may pick versions newer than the
  # project's lockfile has (bun took @types/node 26 here), whose tarballs no step above fetched.
  if [[ -x $FLOWPM ]]; then
    step flowpm-p0 "package.json" -- "$FLOWPM" install --ignore-scripts --registry "$base" \
      --store-dir "$work/flowpm-p0-store" --reporter silent
  fi
  step pnpm-p0 "package.json" -- "$PNPM" install --ignore-scripts --registry "$base" \
    --store-dir "$work/pnpm-p0-store" --cache-dir "$work/pnpm-p0-cache" --reporter=silent
  step bun-p0 "package.json" -- "$BUN" install --ignore-scripts --registry "$base" \
    --cache-dir "$work/bun-p0-cache" --no-progress
  step utoo-p0 "package.json" -- "$UTOO" install --ignore-scripts --registry "$base" \
    --cache-dir "$work/utoo-p0-cache"

  kill "$rec_pid" 2>/dev/null || true
  wait "$rec_pid" 2>/dev/null || true
  rm -rf "$work"
  trap - EXIT

  local log_file=$m/record/requests.log
  log "recorded: $(find "$m/src/packuments" -name index.json | wc -l) packuments," \
      "$(find "$m/www" -name '*.tgz' | wc -l) tarballs, $(du -sh "$m/www" | cut -f1) in www"
  if grep -q ' PASSTHRU$' "$log_file"; then
    log "requests passed through unstored (nginx will answer 404):"
    # grouped by the first three path segments (e.g. /-/npm/v1/attestations/<pkg>@<ver>)
    { grep ' PASSTHRU$' "$log_file" | awk '{split($2, p, "/"); print "    " $1, "/" p[2] "/" p[3] "/" p[4] "/" p[5] "/...", $3}' \
        | sort | uniq -c | sort -rn | head -20 >&2; } || true  # (head closes the pipe early)
  fi
  if grep -qE ' upstream-miss$|^ERROR' "$log_file"; then
    log "upstream misses / errors (nginx will answer 404):"
    { grep -E ' upstream-miss$|^ERROR' "$log_file" | sort | uniq -c | head -20 >&2; } || true
  fi
  if ((${#failed[@]})); then
    log "recording INCOMPLETE, failed steps: ${failed[*]}"
    return 1
  fi
  echo "$hash" >"$m/record/complete"
}

cmd_serve() { # <mirror-dir> [port]
  local m=$1 port; port=$(mirror_port "$m" "${2:-}")
  [[ -d $m/www ]] || die "$m is not a mirror (no www/); build it first"
  ensure_nginx
  write_helper "$m"
  if pid=$(nginx_pid "$m" nginx); then
    if grep -q "listen 127.0.0.1:$port " "$m/nginx/nginx.conf"; then
      log "already serving on http://127.0.0.1:$port/ (pid $pid)"; return 0
    fi
    nginx_stop "$m" nginx
  fi
  port_in_use "$port" && die "127.0.0.1:$port is in use by something else"
  render "$m" "$port"
  echo "$port" >"$m/port"
  nginx_start "$m" nginx "$port"
  log "serving $m/www on http://127.0.0.1:$port/ (nginx pid $(nginx_pid "$m" nginx))"
}

cmd_stop() { # <mirror-dir>
  local m=$1
  if pid=$(nginx_pid "$m" nginx); then nginx_stop "$m" nginx; log "stopped nginx (pid $pid)"
  else log "not running"; fi
}

cmd_url() { echo "http://127.0.0.1:$(mirror_port "$1")/"; }

cmd_status() {
  local m=$1
  if pid=$(nginx_pid "$m" nginx); then echo "serving $(cmd_url "$m") (nginx pid $pid)"; else echo "not serving"; fi
  echo "packuments: $(find "$m/src/packuments" -name index.json 2>/dev/null | wc -l)," \
       "tarballs: $(find "$m/www" -name '*.tgz' 2>/dev/null | wc -l)," \
       "lockfiles: $(ls "$m/lockfiles" 2>/dev/null | tr '\n' ' ')"
}

# verify: install with every tool from the mirror alone; regenerate the peers' lockfiles and
# compare them with the recorded ones. In a loopback-only network namespace when possible.
cmd_verify() { # <mirror-dir>
  local m=$1 port; port=$(mirror_port "$m")
  ensure_nginx
  if [[ -z ${MIRROR_NO_NETNS:-} ]] && unshare -n true 2>/dev/null && command -v ip >/dev/null; then
    log "verifying in a loopback-only network namespace (private nginx on 127.0.0.1:$port)"
    unshare -n env MIRROR_IN_NETNS=1 bash "${BASH_SOURCE[0]}" __verify "$m" "$port"
  else
    log "verifying against the running mirror (no network namespace: the access log is the check)"
    nginx_pid "$m" nginx >/dev/null || cmd_serve "$m" "$port"
    bash "${BASH_SOURCE[0]}" __verify "$m" "$port"
  fi
}

cmd_verify_inner() { # <mirror-dir> <port>
  local m=$1 port=$2 name=nginx base="http://127.0.0.1:$2/"
  render "$m" "$port"
  if [[ -n ${MIRROR_IN_NETNS:-} ]]; then
    ip link set lo up
    name=verify
    nginx_start "$m" verify "$port"
    # shellcheck disable=SC2064
    trap "nginx_stop '$m' verify" EXIT
    # Show that nothing but loopback is reachable from here.
    if curl -fsS -m 5 -o /dev/null "$(upstream_registry)" 2>/dev/null; then die "upstream reachable inside the namespace"; fi
  fi
  local access=$m/nginx/$name-access.log start_line=0
  [[ -f $access ]] && start_line=$(wc -l <"$access")
  local work; work=$(mktemp -d "${TMPDIR:-/tmp}/flowpm-mirror-verify.XXXXXX")
  local bad=0
  vstep() { # <name> <files> -- <cmd...>
    local name=$1 files=$2; shift 3
    local dir=$work/$name rc=0 t0=$SECONDS
    mkdir -p "$dir"
    for f in $files; do cp "$m/project/$f" "$dir/" 2>/dev/null || cp "$m/$f" "$dir/"; done
    run_tool "$work/$name.log" "$dir" "$@" || rc=$?
    if [[ $rc -eq 0 && ( $name == *-lock || -z $(check_tree "$dir" 2>&1) ) ]]; then
      printf '  %-14s ok   %4d s\n' "$name" $((SECONDS - t0)) >&2
    else
      printf '  %-14s FAIL (status %s) %s\n' "$name" "$rc" "$(check_tree "$dir" 2>&1 | head -1)" >&2
      tail -5 "$work/$name.log" | sed 's/^/      /' >&2
      bad=1
    fi
  }
  if [[ -x $FLOWPM ]]; then
    vstep flowpm "package.json pnpm-lock.yaml" -- "$FLOWPM" install --frozen-lockfile --ignore-scripts --registry "$base" \
      --store-dir "$work/s-flowpm" --reporter silent
  fi
  vstep pnpm "package.json pnpm-lock.yaml" -- "$PNPM" install --frozen-lockfile --ignore-scripts \
    --registry "$base" --store-dir "$work/s-pnpm" --cache-dir "$work/c-pnpm" --reporter=silent
  vstep bun "package.json lockfiles/bun.lock" -- "$BUN" install --frozen-lockfile --ignore-scripts \
    --registry "$base" --cache-dir "$work/c-bun" --no-progress
  vstep bun-isolated "package.json lockfiles/bun.lock" -- "$BUN" install --frozen-lockfile --ignore-scripts \
    --linker isolated --registry "$base" --cache-dir "$work/c-bun-iso" --no-progress
  vstep utoo "package.json lockfiles/package-lock.json" -- "$UTOO" install --ignore-scripts \
    --registry "$base" --cache-dir "$work/c-utoo"
  # The peers' lockfiles, generated again from package.json against the mirror: same as recorded?
  vstep bun-lock "package.json" -- "$BUN" install --lockfile-only --ignore-scripts --registry "$base" \
    --cache-dir "$work/c-bun-lock" --no-progress
  vstep utoo-lock "package.json" -- "$UTOO" deps --registry "$base" --cache-dir "$work/c-utoo-lock"
  for pair in "bun-lock/bun.lock" "utoo-lock/package-lock.json"; do
    if cmp -s "$work/$pair" "$m/lockfiles/${pair#*/}"; then log "  ${pair#*/}: regenerated = recorded"
    else log "  ${pair#*/}: regenerated DIFFERS from recorded"; bad=1; fi
  done
  # Requests nginx did not answer with 200/304 are failures, unless the upstream registry also
  # answered 404 when they were recorded (pnpm's /-/npm/v1/attestations/..., utoo's self-update
  # check): those are listed in record/requests.log.
  local reqs miss expected=$work/expected-404
  awk '$3 == 404 {print $2}' "$m/record/requests.log" | sort -u >"$expected"
  tail -n +$((start_line + 1)) "$access" >"$work/access"
  reqs=$(wc -l <"$work/access")
  awk 'NR == FNR {ok[$1] = 1; next} $9 !~ /^(200|304)$/ && !($9 == 404 && ok[$7]) {print $9, $7}' \
    "$expected" "$work/access" >"$work/unexpected"
  miss=$(wc -l <"$work/unexpected")
  log "  nginx: $reqs requests, $(awk '$9 == 404' "$work/access" | wc -l) answered 404 (as upstream did), $miss unexpected"
  if ((miss)); then
    { sort "$work/unexpected" | uniq -c | head -20 | sed 's/^/    /' >&2; } || true
    bad=1
  fi
  rm -rf "$work"
  if ((bad)); then log "verify: FAILED"; return 1; fi
  log "verify: OK"
}

cmd_build() { # <project-dir> <mirror-dir> [port]
  local project m port
  project=$(realpath "$1"); mkdir -p "$2"; m=$(realpath "$2")
  [[ -f $project/package.json && -f $project/pnpm-lock.yaml ]] || die "$project needs package.json and pnpm-lock.yaml"
  port=$(mirror_port "$m" "${3:-}")
  ensure_nginx; ensure_peers
  write_helper "$m"
  mkdir -p "$m/project" "$m/src/packuments" "$m/www"
  if [[ -f $m/project/package.json ]] && ! cmp -s "$project/package.json" "$m/project/package.json"; then
    log "package.json changed since the last recording: regenerating the peers' lockfiles"
    FORCE_LOCKFILES=1
  fi
  cp "$project/package.json" "$project/pnpm-lock.yaml" "$m/project/"
  echo "$port" >"$m/port"
  cmd_record "$project" "$m" "$port"
  cmd_serve "$m" "$port"
  cmd_verify "$m"
  log "mirror ready: $(cmd_url "$m")   (stop: scripts/mirror.sh stop $m)"
}

main() {
  [[ $# -ge 1 ]] || usage
  case $1 in
    build) shift; [[ $# -ge 2 ]] || usage; cmd_build "$@" ;;
    serve) [[ $# -ge 2 ]] || usage; cmd_serve "$(realpath "$2")" "${3:-}" ;;
    stop) [[ $# -ge 2 ]] || usage; cmd_stop "$(realpath "$2")" ;;
    verify) [[ $# -ge 2 ]] || usage; cmd_verify "$(realpath "$2")" ;;
    url) [[ $# -ge 2 ]] || usage; cmd_url "$(realpath "$2")" ;;
    status) [[ $# -ge 2 ]] || usage; cmd_status "$(realpath "$2")" ;;
    __verify) cmd_verify_inner "$2" "$3" ;;
    -h|--help|help) usage ;;
    *) [[ $# -ge 2 ]] || usage; cmd_build "$@" ;;
  esac
}

main "$@"
