#!/usr/bin/env python3
"""Connectors, side by side in one run: sluice's Kafka source against the Kafka client's
own consumer loop (librdkafka, polled until the records stop), and sluice's PostgreSQL
sink against one plain COPY of the same rows.

    python3 bench/connectors.py [--records 1000000] [--rows 1000000] [--rounds 3]

Starts its own servers on loopback and stops them by pid: a tansu broker (`tansu` on
PATH or in $TANSU; in-memory storage) and a throwaway PostgreSQL cluster (initdb/pg_ctl,
as the postgres user when run as root). Runs are interleaved round after round; the
report gives medians, records/s and ratios. Both Kafka programs must read the same
number of records; both PostgreSQL programs must leave the same row count.
Targets (issue 14): Kafka read within 1.3x of the consumer loop; the Postgres sink
within 2x of COPY.
"""
import argparse
import glob
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "examples", "connector_bench")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def as_postgres(cmd):
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


def pg_bin():
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not versions:
        raise SystemExit("PostgreSQL server binaries not found (install postgresql)")
    return versions[-1]


def run(args):
    out = subprocess.run([BIN] + args, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {out.stderr}")
    m = re.search(r"records=(\d+) seconds=([\d.]+)", out.stdout)
    return int(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice", "--example",
                    "connector_bench"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp()
    procs = []
    try:
        kport = free_port()
        url = f"tcp://127.0.0.1:{kport}"
        broker = subprocess.Popen([os.environ.get("TANSU", "tansu"), "broker", "--listener-url", url,
                                   "--advertised-listener-url", url, "--storage-engine",
                                   "memory://tansu/"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        procs.append(broker)
        wait_port(kport)
        servers = f"127.0.0.1:{kport}"
        subprocess.run([os.environ.get("TANSU", "tansu"), "topic", "create", "--broker", url,
                        "--partitions", "2", "bench"], check=True, capture_output=True)

        pport = free_port()
        if os.geteuid() == 0:
            subprocess.run(["chown", "postgres", tmp], check=True)
        b = pg_bin()
        subprocess.run(as_postgres([f"{b}/initdb", "-D", f"{tmp}/data", "-A", "trust", "-U",
                                    "postgres"]), check=True, capture_output=True)
        subprocess.run(as_postgres([f"{b}/pg_ctl", "-D", f"{tmp}/data", "-l", f"{tmp}/log", "-o",
                                    f"-p {pport} -k {tmp} -c listen_addresses=127.0.0.1", "-w",
                                    "start"]), check=True, capture_output=True)
        pg = f"postgres://postgres@127.0.0.1:{pport}/postgres"

        n, s = run(["kafka-produce", servers, "bench", str(a.records)])
        print(f"produced {n} records in {s:.2f} s")
        psql = lambda sql: subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pport), "-U",
                                           "postgres", "-qtAc", sql], check=True,
                                          capture_output=True, text=True).stdout.strip()
        times = {k: [] for k in ["kafka-sluice", "kafka-loop", "pg-sluice", "pg-copy"]}
        for r in range(a.rounds):
            for mode in ["kafka-sluice", "kafka-loop"]:
                n, s = run([mode, servers, "bench"])
                if n != a.records:
                    raise SystemExit(f"{mode} read {n} records, not {a.records}")
                times[mode].append(s)
            for mode in ["pg-sluice", "pg-copy"]:
                psql("DROP TABLE IF EXISTS t; CREATE TABLE t (id bigint, name text, amount float8)")
                n, s = run([mode, pg, "t", str(a.rows)])
                count = int(psql("SELECT count(*) FROM t"))
                if count != a.rows:
                    raise SystemExit(f"{mode} left {count} rows, not {a.rows}")
                times[mode].append(s)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
        med = {k: statistics.median(v) for k, v in times.items()}
        print()
        print(f"Kafka read, {a.records} records (~100 B), median of {a.rounds}:")
        print(f"  sluice read_kafka (bounded, all cores) {med['kafka-sluice']:.2f} s "
              f"({a.records / med['kafka-sluice']:,.0f} records/s)")
        print(f"  librdkafka consumer loop               {med['kafka-loop']:.2f} s "
              f"({a.records / med['kafka-loop']:,.0f} records/s)")
        print(f"  ratio sluice / loop: {med['kafka-sluice'] / med['kafka-loop']:.2f}x (target <= 1.3x)")
        print(f"PostgreSQL write, {a.rows} rows, median of {a.rounds}:")
        print(f"  sluice write_postgres (all cores)      {med['pg-sluice']:.2f} s "
              f"({a.rows / med['pg-sluice']:,.0f} rows/s)")
        print(f"  one COPY                               {med['pg-copy']:.2f} s "
              f"({a.rows / med['pg-copy']:,.0f} rows/s)")
        print(f"  ratio sluice / COPY: {med['pg-sluice'] / med['pg-copy']:.2f}x (target <= 2x)")
    finally:
        if os.path.exists(f"{tmp}/data/postmaster.pid"):
            pid = int(open(f"{tmp}/data/postmaster.pid").readline())
            os.kill(pid, signal.SIGINT)
            for _ in range(300):
                if not os.path.exists(f"/proc/{pid}"):
                    break
                time.sleep(0.05)
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
