#!/usr/bin/env python3
"""The job service with many jobs and messages: how long its list, job page and message
calls take when it holds thousands of jobs and tens of thousands of messages.

    python3 bench/service.py [--jobs 5000] [--messages 50000] [--rounds 20]

Starts `sluice serve` (release build) on a free loopback port with a fresh data
directory, submits --jobs jobs (each with a real plan; their binary's hash is wrong on
purpose, so the service fails them at once without starting a process — a record like
any other), adds --messages messages to one of them through the workers' report call,
then times each call --rounds times and reports the median and the worst, in
milliseconds. The service is stopped by its pid at the end.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.path.join(ROOT, "target", "release", "sluice")
FIXTURE = os.path.join(ROOT, "crates", "sluice-service", "tests", "fixtures", "wordcount-job.json")


def call(url, method="GET", body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req) as resp:
        return resp.read()


def timed(fn, rounds):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    if not os.path.exists(SLUICE):
        subprocess.run(["cargo", "build", "--release", "-p", "sluice-cli"], cwd=ROOT, check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data_dir = tempfile.mkdtemp(prefix="sluice-bench-service-")
    serve = subprocess.Popen(
        [SLUICE, "serve", "--port", str(port), "--data_dir", data_dir],
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                call(url + "/api/v1/jobs")
                break
            except OSError:
                time.sleep(0.1)
        token = open(os.path.join(data_dir, "token")).read().strip()
        job = json.load(open(FIXTURE))
        start = time.perf_counter()
        for i in range(args.jobs):
            job["id"] = f"2026-11-28_00_00_00-{i}"
            call(url + "/api/v1/jobs", "POST", {
                "job": job, "args": [], "binary": "/bin/true",
                "binaryHash": "wrong-on-purpose", "dir": "/",
            }, token)
        submit_s = time.perf_counter() - start
        target = f"2026-11-28_00_00_00-{args.jobs // 2}"
        start = time.perf_counter()
        for first in range(0, args.messages, 1000):
            batch = [{"messageImportance": "JOB_MESSAGE_WARNING" if i % 10 == 0 else "JOB_MESSAGE_BASIC",
                      "messageText": f"message {i}"} for i in range(first, min(first + 1000, args.messages))]
            call(f"{url}/api/v1/jobs/{target}/reports", "POST", {"messages": batch}, token)
        messages_s = time.perf_counter() - start

        # The token of the last page of the list, found by walking it once.
        token_last = None
        page = json.loads(call(url + "/api/v1/jobs?pageSize=50"))
        while "nextPageToken" in page:
            token_last = page["nextPageToken"]
            page = json.loads(call(f"{url}/api/v1/jobs?pageSize=50&pageToken={token_last}"))

        def walk_messages():
            tok = None
            while True:
                q = f"{url}/api/v1/jobs/{target}/messages?pageSize=1000" + (f"&pageToken={tok}" if tok else "")
                page = json.loads(call(q))
                tok = page.get("nextPageToken")
                if not tok:
                    return

        calls = [
            ("UI jobs list, first page", lambda: call(url + "/")),
            ("UI jobs list, last page", lambda: call(f"{url}/?pageToken={token_last}")),
            ("UI jobs list, running only (none)", lambda: call(url + "/?status=active")),
            ("API list, first page (50)", lambda: call(url + "/api/v1/jobs?pageSize=50")),
            ("API list, last page (50)", lambda: call(f"{url}/api/v1/jobs?pageSize=50&pageToken={token_last}")),
            ("API job, view=all", lambda: call(f"{url}/api/v1/jobs/{target}?view=all")),
            ("UI job page", lambda: call(f"{url}/jobs/{target}")),
            ("API messages, first page (100)", lambda: call(f"{url}/api/v1/jobs/{target}/messages")),
            ("API messages, warnings only (100)", lambda: call(f"{url}/api/v1/jobs/{target}/messages?minimumImportance=JOB_MESSAGE_WARNING")),
            (f"API messages, all {args.messages} in pages of 1000", walk_messages),
        ]
        print(f"{args.jobs} jobs submitted in {submit_s:.1f} s ({args.jobs / submit_s:.0f}/s); "
              f"{args.messages} messages reported in {messages_s:.1f} s")
        print(f"{'call':48} {'median ms':>10} {'worst ms':>10}")
        for name, fn in calls:
            median, worst = timed(fn, args.rounds)
            print(f"{name:48} {median:10.2f} {worst:10.2f}")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
