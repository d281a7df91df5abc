#!/usr/bin/env python3
"""Interleaved A/B timing of flowpm binaries (and bun) on one phase of the loopback mirror.

Usage: scripts/ab.py [--rounds N] [--mirror DIR] [--fs DIR] PHASE TOOL...

  PHASE   p3 (cold: lockfile, empty store), p4 (warm store, node_modules removed),
          p0 (no lockfile, empty store), p1 (resolve only, cold cache),
          edit (everything installed, then the first dependency removed from package.json and
          `install` (edit-rm), then restored and `install` again (edit-add))
  TOOL    a flowpm binary (absolute path), or `bun` (the peer under /tmp/peers)

Each round runs every tool once, alternating the order round by round, so that the machine's
drift (large here: medians of one binary move 10-20% between minutes) hits all alike. Prints the
median and minimum wall time and the median CPU (user + sys of the child) per tool and phase.
scripts/bench.sh is the full benchmark; this is for comparing two builds of one change.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

REGISTRY = os.environ.get("REGISTRY", "http://127.0.0.1:4873/")
BUN = os.environ.get("BUN", "/tmp/peers/node_modules/.bin/bun")


def command(tool, work, phase):
    frozen = phase in ("p3", "p4")
    if tool == "bun":
        cmd = [BUN, "install", "--ignore-scripts", "--registry", REGISTRY,
               "--cache-dir", f"{work}/cache", "--no-progress", "--silent"]
    else:
        cmd = [tool, "install", "--ignore-scripts", "--registry", REGISTRY,
               "--store-dir", f"{work}/store", "--reporter", "silent"]
    if frozen:
        cmd.append("--frozen-lockfile")
    if phase == "p1":
        cmd.append("--lockfile-only")
    return cmd


def lockfile(tool):
    return "bun.lock" if tool == "bun" else "pnpm-lock.yaml"


def timed(cmd, cwd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall * 1000, cpu * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--mirror", default="/tmp/flowpm-mirror-realworld")
    parser.add_argument("--fs", default="/dev/shm")
    parser.add_argument("phase", choices=["p0", "p1", "p3", "p4", "edit"])
    parser.add_argument("tools", nargs="+")
    args = parser.parse_args()
    project = f"{args.mirror}/project"
    locks = {"bun.lock": f"{args.mirror}/lockfiles/bun.lock",
             "pnpm-lock.yaml": f"{project}/pnpm-lock.yaml"}
    with open(f"{project}/package.json") as f:
        manifest = f.read()
    removed = json.loads(manifest)
    del removed["dependencies"][next(iter(removed["dependencies"]))]
    removed = json.dumps(removed, indent=2)

    phases = ["edit-rm", "edit-add"] if args.phase == "edit" else [args.phase]
    results = {(tool, p): [] for tool in args.tools for p in phases}
    # Warm phases keep one directory per tool; cold ones start from a fresh one every run.
    keep = args.phase in ("p4", "edit")
    dirs = {}

    def fresh(tool):
        work = tempfile.mkdtemp(prefix="flowpm-ab.", dir=args.fs)
        with open(f"{work}/package.json", "w") as f:
            f.write(manifest)
        if args.phase not in ("p0", "p1"):
            shutil.copy(locks[lockfile(tool)], work)
        return work

    try:
        for tool in args.tools if keep else []:
            dirs[tool] = fresh(tool)
            subprocess.run(command(tool, dirs[tool], "p3"), cwd=dirs[tool], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for round_ in range(args.rounds):
            order = args.tools if round_ % 2 == 0 else args.tools[::-1]
            for tool in order:
                if not keep:
                    work = fresh(tool)
                    results[(tool, args.phase)].append(timed(command(tool, work, args.phase), work))
                    shutil.rmtree(work)
                    continue
                work = dirs[tool]
                if args.phase == "p4":
                    shutil.rmtree(f"{work}/node_modules")
                    results[(tool, "p4")].append(timed(command(tool, work, "p4"), work))
                    continue
                for phase, text in (("edit-rm", removed), ("edit-add", manifest)):
                    with open(f"{work}/package.json", "w") as f:
                        f.write(text)
                    results[(tool, phase)].append(timed(command(tool, work, phase), work))
    finally:
        for work in dirs.values():
            shutil.rmtree(work, ignore_errors=True)
    for (tool, phase), runs in results.items():
        walls = [wall for wall, _ in runs]
        cpus = [cpu for _, cpu in runs]
        print(f"{phase:8} {tool:40} wall median {statistics.median(walls):7.1f} ms "
              f"min {min(walls):7.1f}  cpu median {statistics.median(cpus):7.1f} ms  n={len(runs)}")


if __name__ == "__main__":
    main()
