#!/usr/bin/env python3
"""The REST front under the attacks and faults of issue 12, measured.

Starts a fake OpenAI (fixed delay), coach-server and coach-proxy (the given
build's binaries) on loopback, then measures, each in its own phase:
  flood     6 clients x 500,000 header lines: the proxy's peak and final RSS
  drip      600 connections dripping header lines for 15 s: worst latency of
            a legitimate GET /api/user/stats probed every 100 ms
  slow_ai   1,000 sends waiting on a 4 s AI: the same probe; sends answered
  hangup    a send whose client leaves after 1 s: credits charged
  sigterm   SIGTERM with 600 drippers: the proxy's exit time and status
  restart   coach-server restarted under continuous reads: time from its
            "listening" line to the first 200
Usage: tools/bench/front_attacks.py BUILD_DIR   (a Release build: build/bench)
Prints one line per figure; every phase is bounded in count and time.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/bench"
SERVER = os.path.join(BUILD, "server/coach-server")
PROXY = os.path.join(BUILD, "proxy/coach-proxy")
FAKE = os.path.join(BUILD, "tools/bench/fake-openai")
WORK = tempfile.mkdtemp(prefix="front-attacks-")
PROCS = {}


def start(name, args, env=None):
    log = open(os.path.join(WORK, name + ".log"), "w")
    full_env = dict(os.environ, **(env or {}))
    PROCS[name] = subprocess.Popen(args, stdout=log, stderr=log, env=full_env)
    return PROCS[name]


def port_from_log(name, timeout=20):
    path = os.path.join(WORK, name + ".log")
    end = time.time() + timeout
    while time.time() < end:
        with open(path) as f:
            m = re.search(r"port (\d+)", f.read())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise SystemExit(f"{name} did not start: see {path}")


def rss_mb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0


def get(port, path, timeout=30):
    started = time.time()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status, time.time() - started
    except OSError:
        return 0, time.time() - started


def post_send(port, user, timeout=60):
    body = json.dumps({"userId": user, "message": "Bonjour"})
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", "/api/chat/send", body,
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except OSError:
        return 0


class Prober:
    """GETs stats every 100 ms on a fresh connection; keeps the worst."""

    def __init__(self, port):
        self.port, self.worst, self.failures, self.count = port, 0.0, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            status, took = get(self.port, "/api/user/stats?userId=probe", 30)
            self.count += 1
            self.worst = max(self.worst, took)
            if status != 200:
                self.failures += 1
            self.stop.wait(0.1)

    def done(self):
        self.stop.set()
        self.thread.join()
        return self.worst, self.failures, self.count


def drippers(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /api/user/stats?userId=d HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    return socks


def drip(socks):
    for s in socks:
        try:
            s.sendall(b"X-Drip: 1\r\n")
        except OSError:
            pass


def start_stack(ai_delay="4s"):
    start("fake", [FAKE, "--port=0", f"--delay={ai_delay}", "--threads=1200"])
    fake_port = port_from_log("fake")
    env = {"COACH_DB_PATH": os.path.join(WORK, "coach.db"),
           "COACH_GRPC_LISTEN": "127.0.0.1:0",
           "OPENAI_API_KEY": "sk-bench",
           "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
           "COACH_SEND_RATE_PER_MINUTE": "100000"}
    start("server", [SERVER], env)
    grpc_port = port_from_log("server")
    start("proxy", [PROXY], {"COACH_GRPC_TARGET": f"127.0.0.1:{grpc_port}",
                             "COACH_HTTP_LISTEN": "127.0.0.1:0",
                             "COACH_ACCESS_LOG": "false",
                             # Every client here is 127.0.0.1 (1,000 sends
                             # and a prober at once): the whole table for it.
                             "COACH_HTTP_MAX_CONNECTIONS_PER_CLIENT": "10000"})
    return grpc_port, port_from_log("proxy"), env


def main():
    grpc_port, port, server_env = start_stack()
    proxy = PROCS["proxy"]
    get(port, "/api/user/stats?userId=warm")
    print(f"proxy RSS at rest: {rss_mb(proxy.pid):.1f} MB")

    # flood
    before = rss_mb(proxy.pid)
    block = b"a: b\r\n" * 10000

    def flood():
        try:
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /api/user/stats?userId=f HTTP/1.1\r\n")
            for _ in range(50):
                s.sendall(block)
            s.recv(4096)
        except OSError:
            pass
    threads = [threading.Thread(target=flood) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"flood: RSS before {before:.1f} MB, peak {rss_mb(proxy.pid, 'VmHWM'):.1f}"
          f" MB, after {rss_mb(proxy.pid):.1f} MB")

    # drip
    socks = drippers(port, 600)
    prober = Prober(port)
    for _ in range(8):
        time.sleep(2)
        drip(socks)
    worst, failures, count = prober.done()
    for s in socks:
        s.close()
    print(f"drip: 600 drippers for 16 s, worst legitimate GET {worst*1000:.0f} ms"
          f" ({failures} failed of {count})")

    # slow_ai
    results = []
    lock = threading.Lock()

    def send(i):
        status = post_send(port, f"slow-{i}")
        with lock:
            results.append(status)
    prober = Prober(port)
    senders = [threading.Thread(target=send, args=(i,)) for i in range(1000)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    worst, failures, count = prober.done()
    ok = sum(1 for s in results if s == 200)
    print(f"slow_ai: 1,000 sends on a 4 s AI: {ok} answered 200; worst GET"
          f" meanwhile {worst*1000:.0f} ms ({failures} failed of {count})")

    # hangup
    s = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"userId": "quitter", "message": "Bonjour"}).encode()
    s.sendall(b"POST /api/chat/send HTTP/1.1\r\nHost: x\r\nContent-Type: "
              b"application/json\r\nContent-Length: " + str(len(body)).encode()
              + b"\r\n\r\n" + body)
    time.sleep(1)
    s.close()
    time.sleep(4)  # past the AI's answer
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/api/user/stats?userId=quitter")
    stats = json.loads(c.getresponse().read())["stats"]
    print(f"hangup: after a client left its send, remainingCredits="
          f"{stats['remainingCredits']} totalMessages={stats['totalMessages']}")

    # restart
    stop_flag = threading.Event()
    statuses = []

    def reader():
        while not stop_flag.is_set():
            status, _ = get(port, "/api/user/stats?userId=r", 10)
            statuses.append((time.time(), status))
    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers:
        t.start()
    time.sleep(0.5)
    PROCS["server"].send_signal(signal.SIGTERM)
    PROCS["server"].wait(30)
    time.sleep(1)
    env = dict(server_env, COACH_GRPC_LISTEN=f"127.0.0.1:{grpc_port}")
    open(os.path.join(WORK, "server.log"), "w").close()
    start("server", [SERVER], env)
    port_from_log("server")
    listening = time.time()
    time.sleep(3)
    stop_flag.set()
    for t in readers:
        t.join()
    after = [(t, s) for t, s in statuses if t >= listening]
    first_ok = next((t for t, s in after if s == 200), None)
    refused = sum(1 for t, s in after if s != 200)
    print("restart: first 200 %s after the server listened; %d non-200 after it"
          % (f"{(first_ok - listening)*1000:.0f} ms" if first_ok else "never",
             refused))

    # sigterm
    socks = drippers(port, 600)
    started = time.time()
    proxy.send_signal(signal.SIGTERM)
    code = proxy.wait(60)
    print(f"sigterm: with 600 drippers, exited {code} after "
          f"{(time.time() - started)*1000:.0f} ms")
    for s in socks:
        s.close()


try:
    main()
finally:
    for p in PROCS.values():
        if p.poll() is None:
            p.kill()
            p.wait()
