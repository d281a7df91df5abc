#!/usr/bin/env bash
# Benchmark flowpm against pnpm, bun and utoo on one project, from a loopback mirror.
#
# Usage: scripts/bench.sh [options]
#   --mirror DIR     mirror built by scripts/mirror.sh (default /tmp/flowpm-mirror-realworld);
#                    the project is DIR/project (package.json + pnpm-lock.yaml), the peers' own
#                    lockfiles are DIR/lockfiles/{bun.lock,package-lock.json}
#   --rounds N       rounds (default 5)
#   --fs WHERE       where project copies and stores live: tmpfs (/dev/shm, default),
#                    disk (${TMPDIR:-/tmp}), or a directory
#   --tools LIST     default "flowpm pnpm bun bun-isolated utoo" (bun-isolated = bun --linker isolated)
#   --phases LIST    default "p3 p4 noop"
#   --out DIR        results directory (default /tmp/flowpm-bench-results/<date>-<fs>)
#   --timeout S      per run (default 900)
#   --edit-dep NAME  the dependency the edit phases remove and add back
# Environment: FLOWPM (default target/release/flowpm; the PGO build of scripts/build-pgo.sh is
# target/pgo/release/flowpm), PNPM, BUN, UTOO (default: the peers under
# /tmp/peers; utoo's native binary rather than its node launcher), REGISTRY (default: the mirror's
# URL), PNPM_ARGS / BUN_ARGS / UTOO_ARGS / FLOWPM_ARGS (extra arguments, word-split).
#
# Phases (as in /work/shared/peers.md), each tool with its own lockfile:
#   p3    cold: lockfile present, store/cache empty (rm -rf), no node_modules
#   p4    warm: lockfile present, store warm (from p3), node_modules removed
#   noop: everything in place (right after p4): the tool must notice there is nothing to do
#   p0    full cold: no lockfile, store/cache empty: resolve from the mirror's packuments + install
#   p1    resolve only, cold cache: no lockfile, write it, install nothing (flowpm/pnpm/bun
#         `install --lockfile-only`, utoo `deps`)
#   edit-rm   editing: everything in place, then one direct dependency (--edit-dep, default the
#             first of `dependencies`) removed from package.json and a plain `install` (the
#             lockfile is resolved again and node_modules updated)
#   edit-add  right after edit-rm: package.json restored, plain `install` again
# Each round runs every tool's p3, p4, noop in turn; the order of the tools alternates round by
# round (A B C D, D C B A, ...) so that drift of the machine hits all of them alike.
# Every run is timed by GNU time (wall, user, sys, peak RSS of the process tree's largest process)
# under `timeout`; a failing, timed-out or incomplete install (a direct dependency missing from
# node_modules) is recorded with its status and does not stop the benchmark.
#
# Output in --out: results.csv (tool,phase,round,wall,user,sys,maxrss_kb,status), requests.csv
# (mirror requests per run, from nginx's access log), logs/ (each run's output), summary.md
# (medians, min-max, peer/flowpm wall ratios per phase; also printed).
set -euo pipefail

# shellcheck source=tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
TIME=/usr/bin/time

mirror=/tmp/flowpm-mirror-realworld
rounds=5
fs=tmpfs
tools="flowpm pnpm bun bun-isolated utoo"
phases="p3 p4 noop"
out=""
timeout_s=900
edit_dep=""

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "${BASH_SOURCE[0]}" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --mirror) mirror=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --fs) fs=$2; shift 2 ;;
    --tools) tools=$2; shift 2 ;;
    --phases) phases=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --edit-dep) edit_dep=$2; shift 2 ;;
    -h|--help) usage ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 ]] || die "--rounds must be a positive integer"
mirror=$(realpath "$mirror")
[[ -f $mirror/project/package.json && -f $mirror/project/pnpm-lock.yaml ]] \
  || die "$mirror is not a mirror built by scripts/mirror.sh (no project/)"

# --- prerequisites ------------------------------------------------------------------------------
if [[ ! -x $TIME ]]; then
  log "installing GNU time from Debian"
  sudo=(); [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >&2 && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >&2
fi
for t in $tools; do
  case $t in
    flowpm) [[ -x $FLOWPM ]] || die "no flowpm binary at $FLOWPM (build it, or set FLOWPM=)" ;;
    pnpm|bun|bun-isolated|utoo)
      if [[ ! -x $PNPM || ! -x $BUN || ! -x $UTOO ]]; then
        log "installing peers into $PEERS"; npm install --prefix "$PEERS" pnpm bun utoo >&2
        [[ -x $UTOO_NATIVE ]] && UTOO=$UTOO_NATIVE
      fi ;;
    *) die "unknown tool: $t" ;;
  esac
done
for p in $phases; do [[ $p =~ ^(p0|p1|p3|p4|noop|edit-rm|edit-add)$ ]] || die "unknown phase: $p"; done
prev=""
for p in $phases; do
  [[ $p != edit-add || $prev == edit-rm ]] || die "edit-add must come right after edit-rm in --phases"
  prev=$p
done
if [[ $phases == *edit-* ]]; then
  # The dependency the edit phases remove and add back: given, or the first of `dependencies`.
  edit_dep=$(python3 - "$mirror/project/package.json" "$edit_dep" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
groups = [manifest.get(g, {}) for g in ("dependencies", "devDependencies", "optionalDependencies")]
name = sys.argv[2] or next(iter(groups[0]), "")
if not any(name in group for group in groups):
    sys.exit("no dependency %r in %s" % (name, sys.argv[1]))
print(name)
PY
  ) || die "--edit-dep: the project must have that dependency"
fi

# --- the mirror ---------------------------------------------------------------------------------
started_mirror="" work=""
cleanup() { # remove the work dir; stop the mirror only if this script started it
  if [[ -n $work ]]; then rm -rf "$work"; fi
  if [[ -n $started_mirror ]]; then "$SCRIPT_DIR/mirror.sh" stop "$mirror" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ -z ${REGISTRY:-} ]]; then
  mirror_status=$("$SCRIPT_DIR/mirror.sh" status "$mirror")
  if [[ $mirror_status != serving* ]]; then
    log "starting the mirror"
    "$SCRIPT_DIR/mirror.sh" serve "$mirror"
    started_mirror=1
  fi
  REGISTRY=$("$SCRIPT_DIR/mirror.sh" url "$mirror")
fi
REGISTRY=${REGISTRY%/}/
curl -fsS -o /dev/null "${REGISTRY}-/flowpm-mirror/ping" || log "warning: ${REGISTRY} does not answer the mirror's ping"
access_log=$mirror/nginx/nginx-access.log
for f in bun.lock package-lock.json; do
  [[ $tools != *bun* && $f == bun.lock ]] && continue
  [[ $tools != *utoo* && $f == package-lock.json ]] && continue
  [[ -s $mirror/lockfiles/$f ]] || die "no $mirror/lockfiles/$f: build the mirror with scripts/mirror.sh"
  # Both lockfiles carry full tarball URLs: they must name the registry the tools will use.
  grep -qF "${REGISTRY%/}/" "$mirror/lockfiles/$f" || log "warning: $f does not reference $REGISTRY"
done

# --- where runs happen --------------------------------------------------------------------------
case $fs in
  tmpfs) base_dir=/dev/shm
         [[ $(stat -f -c %T /dev/shm) == tmpfs ]] || die "/dev/shm is not a tmpfs" ;;
  disk) base_dir=${TMPDIR:-/tmp} ;;
  *) base_dir=$fs; mkdir -p "$base_dir" ;;
esac
work=$(realpath "$base_dir")/flowpm-bench-work.$$
fs_type=$(stat -f -c %T "$(realpath "$base_dir")")
[[ -n $out ]] || out=/tmp/flowpm-bench-results/$(date +%Y%m%d-%H%M%S)-$( [[ $fs == tmpfs || $fs == disk ]] && echo "$fs" || echo dir)
mkdir -p "$out/logs" "$work"
out=$(realpath "$out")

# --- tools --------------------------------------------------------------------------------------
lockfile_of() { # the lockfile each tool installs from
  case $1 in flowpm|pnpm) echo pnpm-lock.yaml ;; bun|bun-isolated) echo bun.lock ;; utoo) echo package-lock.json ;; esac
}
pristine_lockfile() {
  local f; f=$(lockfile_of "$1")
  if [[ $f == pnpm-lock.yaml ]]; then echo "$mirror/project/$f"; else echo "$mirror/lockfiles/$f"; fi
}

# tool_cmd <tool> <dir> [phase]: sets the array CMD (store/cache under <dir>)
tool_cmd() {
  local t=$1 d=$2 phase=${3:-p3}
  # shellcheck disable=SC2206  # *_ARGS are meant to be word-split
  case $t in
    flowpm) CMD=("$FLOWPM" install --frozen-lockfile --ignore-scripts --registry "$REGISTRY" --store-dir "$d/store"
                 --reporter silent ${FLOWPM_ARGS:-}) ;;
    pnpm) CMD=("$PNPM" install --frozen-lockfile --ignore-scripts --registry "$REGISTRY" --store-dir "$d/store"
               --cache-dir "$d/cache" --reporter=silent ${PNPM_ARGS:-}) ;;
    bun) CMD=("$BUN" install --frozen-lockfile --ignore-scripts --registry "$REGISTRY" --cache-dir "$d/cache"
              --silent ${BUN_ARGS:-}) ;;
    bun-isolated) CMD=("$BUN" install --frozen-lockfile --ignore-scripts --linker isolated --registry "$REGISTRY"
                       --cache-dir "$d/cache" --silent ${BUN_ARGS:-}) ;;
    utoo) CMD=("$UTOO" install --ignore-scripts --registry "$REGISTRY" --cache-dir "$d/cache" --quiet ${UTOO_ARGS:-}) ;;
  esac
  # Without a lockfile: resolve (p0), or resolve only (p1); after an edit, resolve again.
  if [[ $phase == p0 || $phase == p1 || $phase == edit-* ]]; then
    local args=() a
    for a in "${CMD[@]}"; do [[ $a == --frozen-lockfile ]] || args+=("$a"); done
    CMD=("${args[@]}")
    if [[ $phase == p1 ]]; then
      if [[ $t == utoo ]]; then
        CMD=("$UTOO" deps --registry "$REGISTRY" --cache-dir "$d/cache" ${UTOO_ARGS:-})
      else
        CMD+=(--lockfile-only)
      fi
    fi
  fi
}

tool_version() {
  case $1 in
    flowpm) "$FLOWPM" --version 2>&1 | head -1 ;;
    pnpm) "$PNPM" --version 2>&1 | head -1 ;;
    bun|bun-isolated) "$BUN" --version 2>&1 | head -1 ;;
    utoo) "$UTOO" --version 2>&1 | head -1 ;;
  esac
}

# timed_run <tool-dir> <cwd> <log> <time-file> <wall-file> <cmd...>
# GNU time (outside `timeout`, so the rusage of timeout's waited-for child is included) gives
# user, sys and peak RSS; its wall clock has 10 ms steps, too coarse for noop runs, so the wall
# time is bash's `time` keyword around the same command (1 ms steps). Both include the start of
# GNU time and timeout themselves: "launch overhead" in env.txt is that chain running `true`.
# Each tool gets its own XDG cache/data/state dirs under <tool-dir>, wiped with its store, so
# that no hidden cache survives a cold run. With a fresh state dir pnpm would check for a newer
# pnpm (GET /pnpm, a 404 on the mirror) on every run, as it never records a failed check:
# pnpm_config_update_notifier=false makes every run behave like one whose check is recent.
timed_run() {
  local d=$1 cwd=$2 logf=$3 tfile=$4 wfile=$5; shift 5
  local TIMEFORMAT=%3R rc=0
  cd "$cwd"
  { time XDG_CACHE_HOME="$d/xdg/cache" XDG_DATA_HOME="$d/xdg/data" XDG_STATE_HOME="$d/xdg/state" \
      npm_config_registry="$REGISTRY" pnpm_config_update_notifier=false \
      "$TIME" -f '%e %U %S %M' -o "$tfile" timeout --kill-after=10 "$timeout_s" "$@" \
      >"$logf" 2>&1 </dev/null; } 2>"$wfile" || rc=$?
  cd "$out"
  return "$rc"
}

launch_overhead() { # median wall of the timing chain around `true`, in seconds
  local i f=$work/overhead
  mkdir -p "$f"
  for i in 1 2 3 4 5 6 7; do timed_run "$f" "$f" /dev/null "$f/t" "$f/w.$i" true || true; done
  cat "$f"/w.* | sort -n | sed -n 4p
}

access_lines() { if [[ -r $access_log ]]; then wc -l <"$access_log"; else echo 0; fi; }

# run_phase <tool> <phase> <round>: prepare, time one install, append to the CSVs
run_phase() {
  local t=$1 phase=$2 round=$3
  local d=$work/$t
  local proj=$d/project lock; lock=$(lockfile_of "$t")
  case $phase in
    p0|p1) # no lockfile, empty store/cache, no node_modules
      rm -rf "$d"; mkdir -p "$proj" "$d/xdg"
      cp "$mirror/project/package.json" "$proj/" ;;
    p3) # cold: fresh copy with the lockfile, empty store/cache, no node_modules
      rm -rf "$d"; mkdir -p "$proj" "$d/xdg"
      cp "$mirror/project/package.json" "$proj/"
      cp "$(pristine_lockfile "$t")" "$proj/$lock" ;;
    p4) # warm: store as p3 left it; node_modules removed; package.json and the lockfile as
        # recorded (an edit phase may have run before)
      if [[ ! -d $proj ]]; then # p3 not run in this round: warm the store, untimed
        run_phase_untimed "$t" || true
      fi
      rm -rf "$proj/node_modules"
      cp "$mirror/project/package.json" "$proj/"
      cp "$(pristine_lockfile "$t")" "$proj/$lock" ;;
    noop) # everything in place
      if [[ ! -d $proj/node_modules ]] || ! cmp -s "$mirror/project/package.json" "$proj/package.json"; then
        run_phase_untimed "$t" || true
      fi ;;
    edit-rm) # everything in place, then one dependency removed from package.json
      if [[ ! -d $proj/node_modules ]]; then run_phase_untimed "$t" || true; fi
      python3 - "$proj/package.json" "$edit_dep" <<'PY'
import json, sys
path, name = sys.argv[1:]
manifest = json.load(open(path))
for group in ("dependencies", "devDependencies", "optionalDependencies"):
    manifest.get(group, {}).pop(name, None)
json.dump(manifest, open(path, "w"), indent=2)
PY
      ;;
    edit-add) # the dependency back (edit-rm must have run just before, or nothing changes)
      cp "$mirror/project/package.json" "$proj/" ;;
  esac
  tool_cmd "$t" "$d" "$phase"
  local name=$t-$phase-r$round
  local logf=$out/logs/$name.log tfile=$out/logs/$name.time wfile=$out/logs/$name.wall
  sync
  local before; before=$(access_lines)
  local rc=0
  timed_run "$d" "$proj" "$logf" "$tfile" "$wfile" "${CMD[@]}" || rc=$?
  local after; after=$(access_lines)
  local wall=NA user=NA sys=NA rss=NA gnu_wall=NA
  if [[ -s $tfile ]]; then read -r gnu_wall user sys rss < <(tail -1 "$tfile") || true; fi
  # bash's 1 ms wall clock; GNU time's (10 ms) only if that is missing
  if [[ -s $wfile ]]; then wall=$(tail -1 "$wfile"); else wall=$gnu_wall; fi
  local status=ok problem
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then status=timeout
  elif [[ $rc -ne 0 ]]; then status=exit$rc
  elif [[ $phase == p1 ]]; then
    [[ -s $proj/$lock ]] || { status=nolockfile; echo "no $lock written" >>"$logf"; }
  elif ! problem=$(check_tree "$proj"); then status=incomplete; echo "$problem" >>"$logf"
  fi
  if [[ $status == ok && $phase =~ ^(p3|p4|noop)$ ]] && ! cmp -s "$proj/$lock" "$(pristine_lockfile "$t")"; then
    echo "note: $t rewrote $lock during $phase" >>"$out/notes.txt"
  fi
  echo "$t,$phase,$round,$wall,$user,$sys,$rss,$status" >>"$out/results.csv"
  local reqs=$((after - before)) n404=0
  if ((reqs > 0)); then n404=$(tail -n "$reqs" "$access_log" | awk '$9 == 404' | wc -l); fi
  echo "$t,$phase,$round,$reqs,$n404" >>"$out/requests.csv"
  printf '[bench] r%-2s %-13s %-5s wall %7s s  user %7s  sys %7s  rss %6s MB  req %5s  %s\n' \
    "$round" "$t" "$phase" "$wall" "$user" "$sys" "$([[ $rss == NA ]] && echo NA || echo $((rss / 1024)))" \
    "$reqs" "$status" >&2
}

run_phase_untimed() { # p3 without timing, for p4/noop when p3 is not among the phases
  local t=$1 d=$work/$1
  rm -rf "$d"; mkdir -p "$d/project" "$d/xdg"
  cp "$mirror/project/package.json" "$d/project/"
  cp "$(pristine_lockfile "$t")" "$d/project/$(lockfile_of "$t")"
  tool_cmd "$t" "$d"
  (cd "$d/project" && env XDG_CACHE_HOME="$d/xdg/cache" XDG_DATA_HOME="$d/xdg/data" XDG_STATE_HOME="$d/xdg/state" \
      npm_config_registry="$REGISTRY" pnpm_config_update_notifier=false \
      timeout "$timeout_s" "${CMD[@]}") >/dev/null 2>&1 </dev/null
}

# --- run ----------------------------------------------------------------------------------------
echo "tool,phase,round,wall,user,sys,maxrss_kb,status" >"$out/results.csv"
echo "tool,phase,round,requests,not_found" >"$out/requests.csv"
: >"$out/notes.txt"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -sr)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "project: $mirror/project ($(awk '/^packages:/ {p = 1; next} /^[^ ]/ {p = 0} p && /^  [^ ]/' \
    "$mirror/project/pnpm-lock.yaml" | wc -l) packages in pnpm-lock.yaml)"
  echo "registry: $REGISTRY (loopback mirror $mirror)"
  echo "fs: $fs -> $work ($fs_type)"
  echo "rounds: $rounds; phases: $phases$([[ $phases == *edit-* ]] && echo "; edit dependency: $edit_dep")"
  echo "launch overhead (bash time > GNU time > timeout > true, median of 7): $(launch_overhead) s"
  echo "flowpm binary: $FLOWPM (repo HEAD $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  for t in $tools; do echo "$t: $(tool_version "$t")"; done
} >"$out/env.txt"
sed 's/^/[bench] /' "$out/env.txt" >&2

read -r -a order <<<"$tools"
for round in $(seq "$rounds"); do
  if ((round % 2)); then seq_tools=("${order[@]}")
  else seq_tools=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do seq_tools+=("${order[i]}"); done; fi
  log "round $round/$rounds: ${seq_tools[*]}"
  for t in "${seq_tools[@]}"; do
    for phase in $phases; do run_phase "$t" "$phase" "$round"; done
    rm -rf "${work:?}/$t" # free the tmpfs (and the page cache) before the next tool
  done
done

# --- summary ------------------------------------------------------------------------------------
python3 - "$out" <<'PY' | tee "$out/summary.md"
import csv, os, statistics, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
env = open(os.path.join(out, "env.txt")).read().strip().splitlines()
tools = list(dict.fromkeys(r["tool"] for r in rows))
phases = list(dict.fromkeys(r["phase"] for r in rows))

def med(xs):
    return statistics.median(xs) if xs else None

print("# flowpm benchmark\n")
for line in env:
    print("- " + line)
print()
for phase in phases:
    print("## %s\n" % phase)
    print("| tool | ok/runs | wall s median (min-max) | user s | sys s | peak RSS MB | wall vs flowpm (peer/flowpm) |")
    print("|---|---|---|---|---|---|---|")
    base = None
    stats = {}
    for t in tools:
        rs = [r for r in rows if r["tool"] == t and r["phase"] == phase]
        ok = [r for r in rs if r["status"] == "ok"]
        walls = [float(r["wall"]) for r in ok]
        stats[t] = (rs, ok, walls)
        if t == "flowpm" and walls:
            base = med(walls)
    for t in tools:
        rs, ok, walls = stats[t]
        if not rs:
            continue
        if not walls:
            fails = ",".join(sorted(set(r["status"] for r in rs)))
            print("| %s | 0/%d | failed (%s) | | | | |" % (t, len(rs), fails))
            continue
        w = med(walls)
        u = med([float(r["user"]) for r in ok])
        s = med([float(r["sys"]) for r in ok])
        m = med([int(r["maxrss_kb"]) for r in ok]) / 1024
        ratio = "1.00" if t == "flowpm" else ("%.2f" % (w / base) if base else "n/a")
        print("| %s | %d/%d | %.3f (%.3f-%.3f) | %.2f | %.2f | %.0f | %s |"
              % (t, len(ok), len(rs), w, min(walls), max(walls), u, s, m, ratio))
    print()
PY
log "results: $out/results.csv  summary: $out/summary.md  logs: $out/logs"
[[ -s $out/notes.txt ]] && sed 's/^/[bench] /' "$out/notes.txt" >&2
exit 0
