#!/usr/bin/env python3
"""The cost of crossing processes: the same jobs on 1 process x 2 threads (the embedded
runner) and on 2 processes x 1 thread (the cluster runner on loopback), side by side.

    python3 bench/cluster.py [--rounds 3] [--mb 50] [--events 1000000]

Runs are interleaved (A, B, A, B, ...) because absolute times on a shared machine drift;
the report gives medians and the ratio of 2 processes to 1. Wall time is the whole
program's, process start-up included (the launcher starts its workers; each rebuilds the
pipeline). Every pair of outputs is checked identical.
"""
import argparse
import glob
import os
import statistics
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench", "gen_corpus.py")
TARGET = os.path.join(ROOT, "target", "release", "examples")
CLUSTER = ["--runner=ClusterRunner", "--num_workers=2", "--worker_threads=1"]
EMBEDDED = ["--direct_num_workers=2"]


def run(cmd):
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return time.perf_counter() - start


def lines(pattern):
    out = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            out.extend(f.read().splitlines())
    return sorted(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()

    corpus = f"/tmp/corpus_{args.mb}mb.txt"
    if not os.path.exists(corpus):
        subprocess.run([sys.executable, SHARED, corpus, str(args.mb), "42"], check=True)
    for example, package in (("wordcount", "sluice"), ("nexmark", "sluice-nexmark")):
        subprocess.run(["cargo", "build", "--release", "-q", "--example", example, "-p", package], cwd=ROOT, check=True)
    out = "/tmp/sluice-cluster-bench"
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)

    jobs = {
        f"wordcount {args.mb} MB": lambda label, flags: (
            [os.path.join(TARGET, "wordcount"), f"--input={corpus}", f"--output={out}/wc-{label}/counts", *flags],
            f"{out}/wc-{label}/counts-*",
        ),
    }
    for q in (5, 8):
        jobs[f"nexmark q{q} {args.events} events"] = lambda label, flags, q=q: (
            [os.path.join(TARGET, "nexmark"), f"--query={q}", f"--num_events={args.events}", f"--output={out}/q{q}-{label}.json", *flags],
            f"{out}/q{q}-{label}.json",
        )
    times = {(job, label): [] for job in jobs for label in ("1x2", "2x1")}
    for r in range(args.rounds):
        for job, make in jobs.items():
            for label, flags in (("1x2", EMBEDDED), ("2x1", CLUSTER)):
                cmd, _ = make(label, flags)
                times[(job, label)].append(run(cmd))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    for job, make in jobs.items():
        if lines(make("1x2", [])[1]) != lines(make("2x1", [])[1]):
            sys.exit(f"{job}: 2 processes and 1 process give different results")

    print(f"median of {args.rounds} interleaved rounds, wall time of the whole program")
    print()
    print("| job | 1 process x 2 threads s | 2 processes x 1 thread s | 2x1 / 1x2 |")
    print("|---|---|---|---|")
    for job in jobs:
        a = statistics.median(times[(job, "1x2")])
        b = statistics.median(times[(job, "2x1")])
        print(f"| {job} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
