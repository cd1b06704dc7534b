#!/usr/bin/env python3
"""1,000 concurrent streamed replies through one coach-proxy (issue 14).

Starts the bench's fake OpenAI (a reply streamed in --pieces chunks over
5 s, its first chunk stamped with the time it was written), coach-server on
it and coach-proxy, then opens N POST /api/chat/send/stream at once and
reads each as Server-Sent Events. Reports: streams completed (a final
`reply` event whose text equals the deltas), the time from the fake writing
its first chunk to the client reading the first event (p50, p99, max),
and the threads and peak RSS of coach-server and coach-proxy.
Usage: tools/bench/streams.py BUILD_DIR [N]
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

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/bench"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
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


def main():
    start("fake", [os.path.join(BUILD, "tools/bench/fake-openai"), "--port=0",
                   "--delay=5s", "--stream_pieces=10", f"--threads={N + 200}"])
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
           "COACH_HTTP_MAX_CONNECTIONS_PER_CLIENT": "10000"})
    port = port_from_log("proxy")
    results = [dict() for _ in range(N)]
    threads = [threading.Thread(target=stream, args=(port, i, results[i]))
               for i in range(N)]
    started = time.time()
    for t in threads:
        t.start()
    peak = {"server": 0, "proxy": 0}
    while any(t.is_alive() for t in threads):
        for name in peak:
            peak[name] = max(peak[name], status(PROCS[name].pid, "Threads"))
        time.sleep(0.2)
    took = time.time() - started
    hops = sorted(r["hop"] for r in results if r.get("hop") is not None)
    ok = sum(1 for r in results if r.get("ok"))

    def pct(p):
        return hops[min(len(hops) - 1, int(p * len(hops)))] * 1000 if hops else 0
    print(f"{N} streams, AI trickling 10 pieces over 5 s: {ok} complete "
          f"(deltas = reply) in {took:.1f} s")
    print(f"fake's first chunk -> client's first event: p50 {pct(0.5):.0f} ms, "
          f"p99 {pct(0.99):.0f} ms, max {hops[-1]*1000 if hops else 0:.0f} ms")
    for name in ("server", "proxy"):
        print(f"{name}: peak threads {peak[name]}, peak RSS "
              f"{status(PROCS[name].pid, 'VmHWM')/1024:.0f} MB")
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        print(f"{len(errors)} client errors, e.g. {errors[0]}")


try:
    main()
finally:
    for p in PROCS.values():
        if p.poll() is None:
            p.kill()
            p.wait()
