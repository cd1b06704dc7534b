#!/usr/bin/env python3
"""A coach-server whose route freezes, seen through coach-proxy (issue 25).

Starts two coach-servers (each on its own SQLite file), a TCP relay in front
of the second, and coach-proxy over both (COACH_GRPC_TARGET
ipv4:<first>,<relay>) with keepalive at 1 s / 1 s. Reads
(GET /api/user/stats) and sends (POST /api/chat/send, a new user each, the
offline coach) go through the proxy every 20 ms; after 1 s the relay freezes:
it forwards nothing more and closes nothing (a host that vanished without a
word), and accepts new connections without ever answering. Prints, relative
to the freeze, when the last failed or slow (> 1 s) request ended, and the
requests started from 4 s on: how many, how many not OK, the slowest.

  tools/bench/frozen_route.py <coach-server> <coach-proxy> [native|grpc]

Exit status 0 when every request started from 4 s on was answered 200 in
under 1 s.
"""
import http.client
import json
import os
import random
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

KEEPALIVE = "1s"
PACE = 0.020
LOAD_AFTER_FREEZE = 8.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, process, what):
    for _ in range(400):
        if process.poll() is not None:
            sys.exit(f"{what} exited ({process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.025)
    sys.exit(f"{what} never listened on {port}")


class Relay(threading.Thread):
    """Forwards 127.0.0.1:port to target_port until freeze()."""

    def __init__(self, target_port):
        super().__init__(daemon=True)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.target_port = target_port
        self.frozen = threading.Event()
        self.pairs = {}
        self.silent = []

    def freeze(self):
        self.frozen.set()

    def run(self):
        while True:
            watched = [self.listener]
            if not self.frozen.is_set():
                watched += list(self.pairs)
            ready, _, _ = select.select(watched, [], [], 0.01)
            for sock in ready:
                if sock is self.listener:
                    client, _ = self.listener.accept()
                    if self.frozen.is_set():
                        self.silent.append(client)
                        continue
                    server = socket.create_connection(("127.0.0.1", self.target_port))
                    for s in (client, server):
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.pairs[client] = server
                    self.pairs[server] = client
                    continue
                if self.frozen.is_set():
                    break
                other = self.pairs.get(sock)
                if other is None:
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    for s in (sock, other):
                        self.pairs.pop(s, None)
                        s.close()
                    continue
                other.sendall(data)


def request(port, kind, n, t0):
    started = time.monotonic() - t0
    status = 0
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        if kind == "read":
            conn.request("GET", "/api/user/stats?userId=frozen-reader")
        else:
            body = json.dumps({"userId": f"frozen-{n}", "message": "Bonjour"})
            conn.request("POST", "/api/chat/send", body,
                         {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        status = response.status
        conn.close()
    except OSError:
        status = -1
    return kind, started, time.monotonic() - t0, status


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    server_bin, proxy_bin = sys.argv[1], sys.argv[2]
    client = sys.argv[3] if len(sys.argv) > 3 else "native"
    work = tempfile.mkdtemp()
    processes = []
    try:
        ports = []
        for name in ("a", "b"):
            port = free_port()
            env = dict(os.environ, COACH_DB_PATH=f"{work}/{name}.db",
                       COACH_GRPC_LISTEN=f"127.0.0.1:{port}",
                       COACH_GRPC_KEEPALIVE_MIN_TIME="500ms",
                       COACH_LOG_LEVEL="warn")
            p = subprocess.Popen([server_bin], env=env, stdout=subprocess.DEVNULL,
                                 stderr=open(f"{work}/{name}.log", "w"))
            processes.append(p)
            wait_listening(port, p, f"coach-server {name}")
            ports.append(port)
        relay = Relay(ports[1])
        relay.start()
        http_port = free_port()
        env = dict(os.environ,
                   COACH_GRPC_TARGET=f"ipv4:127.0.0.1:{ports[0]},127.0.0.1:{relay.port}",
                   COACH_HTTP_LISTEN=f"127.0.0.1:{http_port}",
                   COACH_UPSTREAM_CLIENT=client,
                   COACH_UPSTREAM_KEEPALIVE_TIME=KEEPALIVE,
                   COACH_UPSTREAM_KEEPALIVE_TIMEOUT=KEEPALIVE,
                   COACH_ACCESS_LOG="false", COACH_LOG_LEVEL="warn")
        proxy = subprocess.Popen([proxy_bin], env=env, stdout=subprocess.DEVNULL,
                                 stderr=open(f"{work}/proxy.log", "w"))
        processes.append(proxy)
        wait_listening(http_port, proxy, "coach-proxy")
        for _ in range(50):  # both routes in use
            request(http_port, "read", 0, time.monotonic())

        results = []
        t0 = time.monotonic() + 1.0  # the freeze, 1 s into the load
        n = 0
        with ThreadPoolExecutor(max_workers=256) as pool:
            futures = []
            while time.monotonic() < t0 + LOAD_AFTER_FREEZE:
                if not relay.frozen.is_set() and time.monotonic() >= t0:
                    relay.freeze()
                # In either order: round robin alternates servers, so a fixed
                # order would send every read to one and every send to the
                # other.
                for kind in random.sample(("read", "send"), 2):
                    n += 1
                    futures.append(pool.submit(request, http_port, kind, n, t0))
                time.sleep(PACE)  # pacing the load
            results = [f.result() for f in futures]

        bad = [r for r in results if r[1] >= 0 and (r[3] != 200 or r[2] - r[1] >= 1.0)]
        late = [r for r in results if r[1] >= 4.0]
        late_bad = [r for r in late if r[3] != 200 or r[2] - r[1] >= 1.0]
        slowest = max((r[2] - r[1] for r in late), default=0)
        last_bad = max((r[2] for r in bad), default=0)
        print(f"client={client} keepalive={KEEPALIVE}/{KEEPALIVE}: {len(results)} requests "
              f"({sum(r[1] < 0 for r in results)} before the freeze); after it, "
              f"{len(bad)} failed or slower than 1 s, the last ending "
              f"{last_bad:.2f} s after the freeze; from 4 s on: {len(late)} requests "
              f"({sum(r[0] == 'read' for r in late)} reads, "
              f"{sum(r[0] == 'send' for r in late)} sends), {len(late_bad)} not OK "
              f"in < 1 s, slowest {slowest * 1000:.1f} ms")
        statuses = {}
        for r in bad:
            statuses[(r[0], r[3])] = statuses.get((r[0], r[3]), 0) + 1
        print("  failed or slow, by kind and status:",
              ", ".join(f"{k[0]} {k[1]}: {v}" for k, v in sorted(statuses.items())) or "none")
        return 0 if not late_bad else 1
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
