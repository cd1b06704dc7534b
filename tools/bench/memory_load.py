#!/usr/bin/env python3
"""coach-server's memory over a mixed load, and after it (issue 24).

Starts fake-openai (a reply in 5 streamed pieces after --delay), coach-server
on it (SQLite, GET /metrics on) and coach-proxy, samples coach-server's
VmRSS every 2 s while it is idle, under a mixed load for SECONDS, and for
AFTER seconds once the load stops. The load, modest (the machine is shared):
  - reads: wrk, 1 thread, 4 connections, GET /api/user/stats;
  - sends: wrk, 1 thread, 16 connections, POST /api/chat/send as fresh users
    (tools/bench/send.lua), each waiting on the AI;
  - streams: every 30 s a burst of 300 concurrent POST /api/chat/send/stream.
Prints RSS before / peak / after (the last sample, and the lowest of the
last 30 s) and the coach_process_allocator_* metrics when the server has
them. Extra coach-server settings: as environment (COACH_...).
Usage: tools/bench/memory_load.py BUILD_DIR [SECONDS=600] [AFTER=120]
Samples: $WORK/rss.tsv (seconds since start, phase, RSS kB).
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/rel"
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 600
AFTER = int(sys.argv[3]) if len(sys.argv) > 3 else 120
WORK = tempfile.mkdtemp(prefix="memory-")
HERE = os.path.dirname(os.path.abspath(__file__))
PROCS = {}


def start(name, args, env=None):
    log = open(os.path.join(WORK, name + ".log"), "w")
    PROCS[name] = subprocess.Popen(args, stdout=log, stderr=log,
                                   env=dict(os.environ, **(env or {})))


def port_from_log(name, pattern=r"port (\d+)", timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        with open(os.path.join(WORK, name + ".log")) as f:
            m = re.search(pattern, f.read())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise SystemExit(f"{name} did not start (see {WORK})")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stream(port, i):
    body = json.dumps({"userId": f"st-{i}", "message": "Bonjour"}).encode()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall(b"POST /api/chat/send/stream HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Accept: text/event-stream\r\nConnection: close\r\n"
                  b"Content-Length: " + str(len(body)).encode() +
                  b"\r\n\r\n" + body)
        while s.recv(65536):
            pass
        s.close()
    except OSError:
        pass


def allocator_metrics(port):
    try:
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r"^(coach_process_allocator_\w+) (\S+)$", text, re.M)}


def main():
    start("fake", [os.path.join(BUILD, "tools/bench/fake-openai"), "--port=0",
                   "--delay=1s", "--stream_pieces=5", "--threads=600"])
    fake = port_from_log("fake")
    start("server", [os.path.join(BUILD, "server/coach-server")],
          {"COACH_DB_PATH": os.path.join(WORK, "coach.db"),
           "COACH_GRPC_LISTEN": "127.0.0.1:0",
           "COACH_METRICS_LISTEN": "127.0.0.1:0",
           "OPENAI_API_KEY": "sk-bench",
           "OPENAI_BASE_URL": f"http://127.0.0.1:{fake}/v1"})
    grpc = port_from_log("server", r"listening on .*\(port (\d+)\)")
    metrics_port = port_from_log("server", r"metrics: .*\(port (\d+)\)")
    start("proxy", [os.path.join(BUILD, "proxy/coach-proxy")],
          {"COACH_GRPC_TARGET": f"127.0.0.1:{grpc}",
           "COACH_HTTP_LISTEN": "127.0.0.1:0", "COACH_ACCESS_LOG": "false",
           "COACH_HTTP_MAX_CONNECTIONS_PER_CLIENT": "10000"})
    http = port_from_log("proxy")
    server = PROCS["server"].pid
    samples = []
    t0 = time.time()

    def sample(phase, seconds):
        end = time.time() + seconds
        while time.time() < end:
            samples.append((time.time() - t0, phase, rss_kb(server)))
            time.sleep(2)

    sample("before", 10)
    base = f"http://127.0.0.1:{http}"
    loads = [
        subprocess.Popen(["wrk", "-t1", "-c4", f"-d{SECONDS}s", "--timeout",
                          "10s", f"{base}/api/user/stats?userId=mem-reader"],
                         stdout=subprocess.DEVNULL),
        subprocess.Popen(["wrk", "-t1", "-c16", f"-d{SECONDS}s", "--timeout",
                          "10s", "-s", os.path.join(HERE, "send.lua"), base],
                         stdout=subprocess.DEVNULL),
    ]
    stop = threading.Event()

    def bursts():
        n = 0
        while not stop.is_set():
            threads = [threading.Thread(target=stream, args=(http, n + i))
                       for i in range(300)]
            n += 300
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stop.wait(30)

    burster = threading.Thread(target=bursts)
    burster.start()
    sample("load", SECONDS)
    stop.set()
    for p in loads:
        p.wait()
    burster.join()
    sample("after", AFTER)
    with open(os.path.join(WORK, "rss.tsv"), "w") as f:
        for t, phase, kb in samples:
            f.write(f"{t:.0f}\t{phase}\t{kb}\n")
    mb = lambda kb: kb / 1024
    before = max(kb for _, p, kb in samples if p == "before")
    peak = max(kb for _, _, kb in samples)
    after = [kb for t, p, kb in samples if p == "after"]
    tail = [kb for t, p, kb in samples if p == "after" and t > samples[-1][0] - 30]
    print(f"coach-server RSS: before {mb(before):.0f} MB, peak {mb(peak):.0f} MB,"
          f" after {AFTER} s {mb(after[-1]):.0f} MB (lowest of the last 30 s:"
          f" {mb(min(tail)):.0f} MB)")
    for k, v in allocator_metrics(metrics_port).items():
        print(f"  {k} {v / 1048576:.1f} MB")
    print(f"samples: {WORK}/rss.tsv")
    for p in PROCS.values():
        p.terminate()
    for p in PROCS.values():
        p.wait()


if __name__ == "__main__":
    main()
