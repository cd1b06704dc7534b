#!/usr/bin/env python3
"""N concurrent streamed replies through one coach-proxy and one
coach-server on a slow AI (issues 14 and 30).

Starts the bench's fake OpenAI (a reply streamed in 10 chunks over
AI_SECONDS, its first chunk stamped with the time it was written),
coach-server on it and coach-proxy, then opens N POST /api/chat/send/stream
at once and reads each as Server-Sent Events, while one more client reads
GET /api/user/stats every 50 ms over a kept-alive connection. Reports:
streams completed (a final `reply` event whose text equals the deltas), the
time from the fake writing its first chunk to the client reading the first
event (p50, p99, max), the reads' latency during the streams (p50, p99,
max), and for coach-server and coach-proxy their peak threads, their RSS
before and at the peak, and the growth per stream.
Usage: tools/bench/streams.py BUILD_DIR [N] [AI_SECONDS]   (1000, 5)
With --check, exits 1 unless every stream completed and every read
answered (tests/many_streams_test.sh): no figure is judged, only outcomes.
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

CHECK = "--check" in sys.argv
ARGS = [a for a in sys.argv[1:] if a != "--check"]
BUILD = ARGS[0] if len(ARGS) > 0 else "build/bench"
N = int(ARGS[1]) if len(ARGS) > 1 else 1000
AI_SECONDS = float(ARGS[2]) if len(ARGS) > 2 else 5
WORK = tempfile.mkdtemp(prefix="streams-")
PROCS = {}


def start(name, args, env=None):
    log = open(os.path.join(WORK, name + ".log"), "w")
    PROCS[name] = subprocess.Popen(args, stdout=log, stderr=log,
                                   env=dict(os.environ, **(env or {})))


def port_from_log(name, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        with open(os.path.join(WORK, name + ".log")) as f:
            m = re.search(r"port (\d+)", f.read())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise SystemExit(f"{name} did not start (see {WORK})")


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def urllib_get(port):
    import urllib.request
    with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/user/stats?userId=reader") as r:
        r.read()


def stream(port, i, out):
    body = json.dumps({"userId": f"s{i}", "message": "Bonjour"}).encode()
    first = None
    deltas, reply = [], None
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall(b"POST /api/chat/send/stream HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                  b"Connection: close\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\n\r\n" + body)
        buf = b""
        while True:
            data = s.recv(65536)
            if not data:
                break
            buf += data
            while b"\n\n" in buf:
                # chunked framing interleaves size lines: find events by text
                event, buf = buf.split(b"\n\n", 1)
                m = re.search(rb"data: (\{.*\})", event)
                if not m:
                    continue
                doc = json.loads(m.group(1))
                if "delta" in doc:
                    if first is None:
                        first = time.time()
                        t = re.match(r"t=(\d+) ", doc["delta"])
                        out["hop"] = first - int(t.group(1)) / 1e6 if t else None
                    deltas.append(doc["delta"])
                elif "reply" in doc:
                    reply = doc["reply"]
        s.close()
    except OSError as e:
        out["error"] = str(e)
    out["ok"] = (reply is not None and
                 "".join(deltas) == reply["assistantMessage"]["content"])


def reader(port, done, latencies, failures):
    """GET /api/user/stats every 50 ms on one kept-alive connection."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not done.is_set():
        began = time.time()
        try:
            conn.request("GET", "/api/user/stats?userId=reader")
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                failures.append(answer.status)
        except (OSError, http.client.HTTPException) as e:
            # Counted, whatever broke: a read that fails must fail --check.
            failures.append(repr(e))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies.append(time.time() - began)
        done.wait(0.05)
    conn.close()


def raise_file_limit():
    """The client holds a socket per stream: its soft limit up to the hard
    one; too low a hard limit skips the check (exit 77) rather than fail."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = N + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        print(f"open files limited to {hard}: {N} streams need {need}")
        raise SystemExit(77 if CHECK else 1)


def main():
    raise_file_limit()
    start("fake", [os.path.join(BUILD, "tools/bench/fake-openai"), "--port=0",
                   f"--delay={AI_SECONDS}s", "--stream_pieces=10",
                   f"--threads={N + 200}"])
    fake = port_from_log("fake")
    start("server", [os.path.join(BUILD, "server/coach-server")],
          {"COACH_DB_PATH": os.path.join(WORK, "coach.db"),
           "COACH_GRPC_LISTEN": "127.0.0.1:0", "OPENAI_API_KEY": "sk-bench",
           "OPENAI_BASE_URL": f"http://127.0.0.1:{fake}/v1"})
    grpc = port_from_log("server")
    start("proxy", [os.path.join(BUILD, "proxy/coach-proxy")],
          {"COACH_GRPC_TARGET": f"127.0.0.1:{grpc}",
           "COACH_HTTP_LISTEN": "127.0.0.1:0", "COACH_ACCESS_LOG": "false",
           # Every stream comes from 127.0.0.1: the whole table for it.
           "COACH_HTTP_MAX_CONNECTIONS_PER_CLIENT": "20000"})
    port = port_from_log("proxy")
    # Warm: one read, then the processes' RSS before the streams.
    urllib_get(port)
    idle = {name: status(PROCS[name].pid, "VmRSS") for name in ("server", "proxy")}
    done = threading.Event()
    latencies, failures = [], []
    # A daemon, and stopped in `finally`: an error below must end the
    # script, not leave it waiting on this thread.
    read_thread = threading.Thread(target=reader, daemon=True,
                                   args=(port, done, latencies, failures))
    read_thread.start()
    try:
        results = [dict() for _ in range(N)]
        threads = [threading.Thread(target=stream, args=(port, i, results[i]))
                   for i in range(N)]
        started = time.time()
        for t in threads:
            t.start()
        peak = {"server": 0, "proxy": 0}
        rss = {"server": 0, "proxy": 0}
        while any(t.is_alive() for t in threads):
            for name in peak:
                peak[name] = max(peak[name], status(PROCS[name].pid, "Threads"))
                rss[name] = max(rss[name], status(PROCS[name].pid, "VmRSS"))
            time.sleep(0.2)
        took = time.time() - started
    finally:
        done.set()
        read_thread.join()
    hops = sorted(r["hop"] for r in results if r.get("hop") is not None)
    ok = sum(1 for r in results if r.get("ok"))

    def pct(p):
        return hops[min(len(hops) - 1, int(p * len(hops)))] * 1000 if hops else 0
    print(f"{N} streams, AI trickling 10 pieces over {AI_SECONDS:g} s: {ok} "
          f"complete (deltas = reply) in {took:.1f} s")
    print(f"fake's first chunk -> client's first event: p50 {pct(0.5):.0f} ms, "
          f"p99 {pct(0.99):.0f} ms, max {hops[-1]*1000 if hops else 0:.0f} ms")
    reads = sorted(latencies)

    def read_pct(p):
        return reads[min(len(reads) - 1, int(p * len(reads)))] * 1000 if reads else 0
    print(f"reads meanwhile: {len(reads)}, {len(failures)} failed; latency "
          f"p50 {read_pct(0.5):.1f} ms, p99 {read_pct(0.99):.1f} ms, "
          f"max {reads[-1] * 1000 if reads else 0:.1f} ms")
    for name in ("server", "proxy"):
        grown = rss[name] - idle[name]
        print(f"{name}: peak threads {peak[name]}, RSS {idle[name]/1024:.0f} MB "
              f"before, {rss[name]/1024:.0f} MB at the peak: "
              f"{grown / N:.1f} KB per stream")
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        print(f"{len(errors)} client errors, e.g. {errors[0]}")
    if CHECK and (ok != N or failures or not reads):
        raise SystemExit(f"FAIL: {N - ok} streams incomplete, "
                         f"{len(failures)} reads failed")


try:
    main()
finally:
    for p in PROCS.values():
        if p.poll() is None:
            p.kill()
            p.wait()
