#!/usr/bin/env python3
"""Wordcount, side by side: sluice (1 and 2 workers) against a hand-written Rust loop
and, if installed, Beam Python's wordcount, on the same corpus in one run.

    python3 bench/wordcount.py [--rounds N] [--mb 50] [--beam /path/to/python]

Runs are interleaved (A, B, C, A, B, C, ...) because absolute times on a shared machine
drift; the report gives medians and ratios, and the peak RSS of each program. Every
program's output is checked against the hand-written program's counts.
Beam Python is looked for at /tmp/beamvenv/bin/python (see ../shared/bench/README.md).
"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench", "gen_corpus.py")


def run(cmd):
    """Runs cmd; returns (seconds, peak RSS in MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed:\n{stderr}")
    return elapsed, usage.ru_maxrss / 1024.0


def read_counts(pattern):
    counts = {}
    for path in glob.glob(pattern):
        with open(path) as f:
            for line in f:
                word, n = line.rstrip("\n").rsplit(": ", 1)
                counts[word] = counts.get(word, 0) + int(n)
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--beam", default="/tmp/beamvenv/bin/python")
    ap.add_argument("--beam-rounds", type=int, default=1)
    args = ap.parse_args()

    corpus = f"/tmp/corpus_{args.mb}mb.txt"
    if not os.path.exists(corpus):
        subprocess.run([sys.executable, SHARED, corpus, str(args.mb), "42"], check=True)
    size_mb = os.path.getsize(corpus) / 1e6

    for what in (["--example", "wordcount", "-p", "sluice"], ["-p", "handwritten-wordcount"]):
        subprocess.run(["cargo", "build", "--release", "-q", *what], cwd=ROOT, check=True)
    target = os.path.join(ROOT, "target", "release")
    out = "/tmp/sluice-bench"
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)

    programs = {
        "handwritten (1 thread)": ([os.path.join(target, "handwritten-wordcount"), corpus, f"{out}/hand.txt"], f"{out}/hand.txt"),
        "sluice, 1 worker": ([os.path.join(target, "examples", "wordcount"), f"--input={corpus}", f"--output={out}/s1/counts", "--direct_num_workers=1"], f"{out}/s1/counts-*"),
        "sluice, 2 workers": ([os.path.join(target, "examples", "wordcount"), f"--input={corpus}", f"--output={out}/s2/counts", "--direct_num_workers=2"], f"{out}/s2/counts-*"),
    }
    times = {name: [] for name in programs}
    rss = {name: [] for name in programs}
    for r in range(args.rounds):
        for name, (cmd, _) in programs.items():
            t, m = run(cmd)
            times[name].append(t)
            rss[name].append(m)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in programs), file=sys.stderr)

    expected = read_counts(programs["handwritten (1 thread)"][1])
    for name, (_, pattern) in programs.items():
        if read_counts(pattern) != expected:
            sys.exit(f"{name}: counts differ from the hand-written program's")

    beam = None
    if os.path.exists(args.beam):
        beam_times = []
        for _ in range(args.beam_rounds):
            t, m = run([args.beam, "-m", "apache_beam.examples.wordcount", "--input", corpus, "--output", f"{out}/beam", "--runner=FnApiRunner"])
            beam_times.append((t, m))
        if read_counts(f"{out}/beam*") != expected:
            sys.exit("Beam Python: counts differ from the hand-written program's")
        beam = (statistics.median(t for t, _ in beam_times), max(m for _, m in beam_times))

    med = {n: statistics.median(v) for n, v in times.items()}
    hand, s1, s2 = med["handwritten (1 thread)"], med["sluice, 1 worker"], med["sluice, 2 workers"]
    print(f"wordcount on {corpus} ({size_mb:.1f} MB), median of {args.rounds} interleaved rounds")
    print()
    print("| program | median s | MB/s | peak RSS MB |")
    print("|---|---|---|---|")
    for name in programs:
        print(f"| {name} | {med[name]:.2f} | {size_mb / med[name]:.0f} | {max(rss[name]):.0f} |")
    if beam:
        print(f"| Beam Python {'FnApiRunner'} | {beam[0]:.2f} | {size_mb / beam[0]:.1f} | {beam[1]:.0f} |")
    print()
    print(f"sluice 1 worker / handwritten: {s1 / hand:.2f}x the time (target <= 1.3)")
    print(f"sluice 2 workers speedup over 1: {s1 / s2:.2f}x (target >= 1.6)")
    print(f"sluice 2 workers peak RSS: {max(rss['sluice, 2 workers']):.0f} MB (target < 150)")
    if beam:
        print(f"Beam Python / sluice 2 workers: {beam[0] / s2:.0f}x the time")
    else:
        print(f"Beam Python not found at {args.beam}; see ../shared/bench/README.md")


if __name__ == "__main__":
    main()
