#!/usr/bin/env python3
"""File formats, side by side: summing a float column per string key of a generated
Parquet file (about 200 MB at the default 19,000,000 rows) and of the same rows as CSV,
sluice against polars, in one run.

    python3 bench/files.py [--rows 19000000] [--rounds 3] [--python /path/to/python]

polars is a bench-only tool: it is looked for in --python (default /tmp/polarsvenv/bin/python)
and installed there with pip when missing. polars also generates the data (columns id
int64, key string over 10,000 keys, value float64, note string), so neither side reads
a file it wrote itself. Runs are interleaved (sluice 1 worker, sluice all cores, polars
1 thread, polars all threads, round after round); the report gives medians, MB/s of the
file and ratios. Every program's number of keys and total are checked equal.
sluice runs the pipeline two ways: "rows" reads serde rows (read_parquet / read_csv of a
two-field struct) into combine_per_key; "Arrow" reads record batches
(read_parquet_batches / read_csv_batches) into combine_column_per_key.
Targets (issue 13): sluice on one worker within 1.5x of the faster polars on one
thread; sluice on all cores faster than polars on one thread.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "examples", "file_bench")
CORES = os.cpu_count() or 1

GENERATE = r"""
import sys, polars as pl
rows, parquet, csv = int(sys.argv[1]), sys.argv[2], sys.argv[3]
df = pl.select(pl.int_range(0, rows, dtype=pl.Int64).alias("id")).with_columns(
    (pl.lit("key-") + ((pl.col("id") * 7919) % 10000).cast(pl.Utf8)).alias("key"),
    (((pl.col("id") * 31) % 100000).cast(pl.Float64) / 100.0).alias("value"),
    (pl.lit("note ") + (pl.col("id") % 977).cast(pl.Utf8)).alias("note"),
)
df.write_parquet(parquet, compression="snappy", row_group_size=262144)
df.write_csv(csv)
"""

POLARS = r"""
import sys, time, polars as pl
kind, path = sys.argv[1], sys.argv[2]
start = time.perf_counter()
scan = pl.scan_parquet(path) if kind == "parquet" else pl.scan_csv(path)
out = scan.group_by("key").agg(pl.col("value").sum()).collect()
seconds = time.perf_counter() - start
print(f"keys={out.height} total={out['value'].sum():.3f} seconds={seconds:.3f}")
"""


def ensure_polars(python):
    if os.path.exists(python) and subprocess.run(
            [python, "-c", "import polars"], capture_output=True).returncode == 0:
        return python
    venv = os.path.dirname(os.path.dirname(python))
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "polars"], check=True)
    return python


def measure(cmd, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    m = re.search(r"keys=(\d+) total=([\d.]+) seconds=([\d.]+)", proc.stdout)
    if not m:
        sys.exit(f"{' '.join(cmd)}: unexpected output {proc.stdout!r}")
    return int(m.group(1)), round(float(m.group(2)), 1), float(m.group(3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=19_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python", default="/tmp/polarsvenv/bin/python")
    args = ap.parse_args()
    python = ensure_polars(args.python)
    subprocess.run(["cargo", "build", "--release", "--example", "file_bench", "-p", "sluice"],
                   cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="sluice-bench-files-") as tmp:
        parquet, csv = os.path.join(tmp, "data.parquet"), os.path.join(tmp, "data.csv")
        subprocess.run([python, "-c", GENERATE, str(args.rows), parquet, csv], check=True)
        one = dict(os.environ, POLARS_MAX_THREADS="1")
        for kind, path in [("parquet", parquet), ("csv", csv)]:
            mb = os.path.getsize(path) / 1e6
            programs = {
                "sluice rows, 1 worker": ([BIN, f"--{kind}={path}", "--direct_num_workers=1"],
                                          None),
                f"sluice rows, {CORES} workers": ([BIN, f"--{kind}={path}",
                                                   f"--direct_num_workers={CORES}"], None),
                "sluice Arrow, 1 worker": ([BIN, f"--{kind}={path}", "--arrow=true",
                                            "--direct_num_workers=1"], None),
                f"sluice Arrow, {CORES} workers": ([BIN, f"--{kind}={path}", "--arrow=true",
                                                    f"--direct_num_workers={CORES}"], None),
                "polars, 1 thread": ([python, "-c", POLARS, kind, path], one),
                f"polars, {CORES} threads": ([python, "-c", POLARS, kind, path], None),
            }
            times = {name: [] for name in programs}
            answers = {}
            for r in range(args.rounds):
                for name, (cmd, env) in programs.items():
                    keys, total, seconds = measure(cmd, env)
                    times[name].append(seconds)
                    answers[name] = (keys, total)
            if len(set(answers.values())) != 1:
                sys.exit(f"{kind}: the programs disagree: {answers}")
            print(f"\n{kind}: {path} ({mb:.0f} MB, {args.rows:,} rows, "
                  f"{answers[name][0]:,} keys), median of {args.rounds} interleaved rounds\n")
            print("| program | median s | MB/s |")
            print("|---|---|---|")
            med = {name: statistics.median(t) for name, t in times.items()}
            for name in programs:
                print(f"| {name} | {med[name]:.2f} | {mb / med[name]:.0f} |")
            p1 = med["polars, 1 thread"]
            pn = med[f"polars, {CORES} threads"]
            for variant in ["rows", "Arrow"]:
                s1, sn = med[f"sluice {variant}, 1 worker"], med[f"sluice {variant}, {CORES} workers"]
                print(f"\nsluice {variant}, 1 worker / polars 1 thread: {s1 / p1:.2f}x the time "
                      f"(target <= 1.5)")
                print(f"sluice {variant}, {CORES} workers / polars 1 thread: {sn / p1:.2f}x the time "
                      f"(target < 1)")
                print(f"sluice {variant}, {CORES} workers / polars {CORES} threads: "
                      f"{sn / pn:.2f}x the time")


if __name__ == "__main__":
    main()
