#!/usr/bin/env python3
"""Grouping data larger than memory: a GroupByKey over generated records of about
--factor times the memory budget, spilled, against the same job unconstrained on a size
that fits in memory, and against coreutils' external sort on the same bytes as a floor.

    python3 bench/spill.py [--budget 2GB] [--factor 3] [--value-bytes 100]

Runs (release build of the `group_large` example, 2 workers):
  A. in memory: records of about half the budget, no --max_memory (the default budget
     holds them): throughput in MB/s of records.
  B. spilled: records of --factor x the budget with --max_memory=budget: throughput and
     peak RSS (/usr/bin/time -v) as a multiple of the budget.
  C. floor: the records of B written as `key<TAB>value` lines, then
     `LC_ALL=C sort -S <budget> | cut -f1 | uniq -c | wc -l` (groups counted).
Reports B's throughput as a fraction of A's (target: at least 0.5) and B's peak RSS over
the budget (target: under 1.3). Every run's group count is checked equal where the data
is the same (B and C).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "examples", "group_large")
UNITS = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def size(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]B)", text.upper())
    if not m:
        sys.exit(f"--budget {text!r}: use a size such as 512MB or 2GB")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def timed(cmd, **kw):
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, **kw)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) * 1024
    return proc.stdout, seconds, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", default="2GB")
    ap.add_argument("--factor", type=float, default=3.0)
    ap.add_argument("--value-bytes", type=int, default=100)
    args = ap.parse_args()
    budget = size(args.budget)
    if not os.path.exists(BIN):
        subprocess.run(["cargo", "build", "--release", "--example", "group_large", "-p", "sluice"],
                       cwd=ROOT, check=True)
    record_bytes = args.value_bytes + 8
    fit = int(budget / 2 / record_bytes)
    big = int(budget * args.factor / record_bytes)
    common = ["--direct_num_workers=2", f"--value_bytes={args.value_bytes}"]
    with tempfile.TemporaryDirectory(prefix="sluice-bench-spill-") as tmp:
        out_a, sec_a, rss_a = timed([BIN, f"--records={fit}", f"--temp_location={tmp}"] + common)
        out_b, sec_b, rss_b = timed([BIN, f"--records={big}", f"--max_memory={budget}",
                                     f"--temp_location={tmp}"] + common)
        groups_b = int(re.search(r"groups=(\d+)", out_b).group(1))
        dump = os.path.join(tmp, "records.tsv")
        subprocess.run([BIN, f"--records={big}", f"--dump={dump}"] + common, check=True,
                       capture_output=True)
        sort = (f"LC_ALL=C sort -S {budget // (1 << 20)}M -T {tmp} --parallel=2 {dump} "
                f"| cut -f1 | uniq -c | wc -l")
        out_c, sec_c, rss_c = timed(["sh", "-c", sort])
        groups_c = int(out_c.strip())
    mb = lambda n: n / 1e6
    rate_a, rate_b = mb(fit * record_bytes) / sec_a, mb(big * record_bytes) / sec_b
    rate_c = mb(big * record_bytes) / sec_c
    print(f"budget {budget >> 20} MiB; records of {record_bytes} bytes")
    print(f"A in memory   {fit:>11} records {mb(fit * record_bytes):8.0f} MB {sec_a:7.1f} s "
          f"{rate_a:7.1f} MB/s  peak RSS {rss_a >> 20} MiB")
    print(f"B spilled     {big:>11} records {mb(big * record_bytes):8.0f} MB {sec_b:7.1f} s "
          f"{rate_b:7.1f} MB/s  peak RSS {rss_b >> 20} MiB ({rss_b / budget:.2f}x budget)  {out_b.strip()}")
    print(f"C sort|uniq   {big:>11} records {mb(big * record_bytes):8.0f} MB {sec_c:7.1f} s "
          f"{rate_c:7.1f} MB/s  (writing the file not counted)")
    print(f"spilled/in-memory throughput {rate_b / rate_a:.2f} (target >= 0.5); "
          f"spilled/sort throughput {rate_b / rate_c:.2f}")
    if groups_b != groups_c:
        sys.exit(f"group counts differ: sluice {groups_b}, sort {groups_c}")


if __name__ == "__main__":
    main()
