#!/usr/bin/env python3
"""Issue 24: can one client address keep the others out of coach-proxy?

Starts coach-server and coach-proxy (the given build's binaries) on
loopback with COACH_HTTP_MAX_CONNECTIONS=--max (1,500), then measures:
  lockout     --silent (1,600) connections from 127.0.0.1 that send
              nothing; meanwhile 20 reads (GET /api/user/stats, each on a
              new connection, 5 s timeout) from 127.0.0.2: how many 200,
              how long in all, the slowest
  silent      one connection from 127.0.0.3 that sends nothing: how long
              until the proxy closes it
  idle        one keep-alive connection from 127.0.0.4, idle after one
              request: how long until the proxy closes it
  slow_reader one connection from 127.0.0.5 that pipelines --pipelined
              (100) GET /openapi.json and reads nothing: the most the
              proxy's socket held unsent (its Send-Q, from `ss`), and how
              long until the proxy's socket is gone
Every wait is bounded (--bound, 90 s). Clients on 127.0.0.2... are other
addresses on Linux's loopback (all of 127.0.0.0/8).
Usage: tools/bench/lockout.py BUILD_DIR [--max=N] [--silent=N]
         [--per-client=N] [--pipelined=N] [--bound=SECONDS]
         [--phases=lockout,silent,idle,slow_reader]
--per-client sets COACH_HTTP_MAX_CONNECTIONS_PER_CLIENT (a binary that
does not know it ignores the variable); unset: the binary's default.
"""
import argparse
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

ARGS = argparse.ArgumentParser()
ARGS.add_argument("build", nargs="?", default="build/bench")
ARGS.add_argument("--max", type=int, default=1500)
ARGS.add_argument("--silent", type=int, default=1600)
ARGS.add_argument("--per-client", type=int, default=None)
ARGS.add_argument("--pipelined", type=int, default=100)
ARGS.add_argument("--bound", type=float, default=90)
ARGS.add_argument("--phases", default="lockout,silent,idle,slow_reader")
ARGS = ARGS.parse_args()

SERVER = os.path.join(ARGS.build, "server/coach-server")
PROXY = os.path.join(ARGS.build, "proxy/coach-proxy")
WORK = tempfile.mkdtemp(prefix="lockout-")
PROCS = {}


def start(name, args, env):
    log = open(os.path.join(WORK, name + ".log"), "w")
    PROCS[name] = subprocess.Popen(args, stdout=log, stderr=log,
                                   env=dict(os.environ, **env))


def port_from_log(name, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        with open(os.path.join(WORK, name + ".log")) as f:
            m = re.search(r"port (\d+)", f.read())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise SystemExit(f"{name} did not start (see {WORK})")


def ss(filter_expr, processes=False):
    """`ss -tnH` lines matching a filter (all states), split in fields; with
    `processes`, the owning process in the last field (none: orphaned)."""
    out = subprocess.run(["ss", "-tnH" + ("p" if processes else ""), "state",
                          "all", filter_expr],
                         capture_output=True, text=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def accept_queue(port):
    """Connections waiting in the proxy's accept queue."""
    for fields in ss(f"( sport = :{port} )"):
        if fields[0] == "LISTEN":
            return int(fields[1])
    return 0


def read(port, source, path="/api/user/stats?userId=probe", timeout=5):
    started = time.time()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                       source_address=(source, 0))
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status, time.time() - started
    except OSError:
        return 0, time.time() - started


def wait_closed(sock, bound):
    """Seconds until the peer closes `sock` (None past `bound`)."""
    started = time.time()
    sock.settimeout(bound)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
    except socket.timeout:
        return None
    except OSError:
        pass  # reset: closed too
    return time.time() - started


def main():
    start("server", [SERVER], {"COACH_DB_PATH": os.path.join(WORK, "coach.db"),
                               "COACH_GRPC_LISTEN": "127.0.0.1:0"})
    grpc_port = port_from_log("server")
    env = {"COACH_GRPC_TARGET": f"127.0.0.1:{grpc_port}",
           "COACH_HTTP_LISTEN": "127.0.0.1:0",
           "COACH_HTTP_MAX_CONNECTIONS": str(ARGS.max),
           "COACH_ACCESS_LOG": "false"}
    if ARGS.per_client is not None:
        env["COACH_HTTP_MAX_CONNECTIONS_PER_CLIENT"] = str(ARGS.per_client)
    start("proxy", [PROXY], env)
    port = port_from_log("proxy")
    print(f"{PROXY}: max connections {ARGS.max}, per client "
          f"{ARGS.per_client if ARGS.per_client is not None else '(default)'}")
    status, _ = read(port, "127.0.0.2", "/api/user/stats?userId=warm")
    assert status == 200, status

    phases = ARGS.phases.split(",")
    if "lockout" in phases:
        lockout(port)
    if "silent" in phases:
        silent(port)
    if "idle" in phases:
        idle(port)
    if "slow_reader" in phases:
        slow_reader(port)


def lockout(port):
    silent = []
    for _ in range(ARGS.silent):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.connect(("127.0.0.1", port))
        silent.append(s)
    end = time.time() + 10
    while accept_queue(port) > 0 and time.time() < end:
        time.sleep(0.05)
    held = sum(1 for f in ss(f"( sport = :{port} )") if f[0] == "ESTAB")
    began = time.time()
    results = [read(port, "127.0.0.2") for _ in range(20)]
    took = time.time() - began
    ok = sum(1 for status, _ in results if status == 200)
    worst = max(t for _, t in results)
    print(f"lockout: {ARGS.silent} silent connections from 127.0.0.1 "
          f"({held} held by the proxy): {ok}/20 reads from 127.0.0.2 "
          f"answered 200 in {took:.2f} s (slowest {worst*1000:.0f} ms)")
    for s in silent:
        s.close()



def silent(port):
    s = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.3", 0))
    life = wait_closed(s, ARGS.bound)
    s.close()
    print("silent: a connection that sends nothing is closed after " +
          (f"{life:.1f} s" if life is not None else f"more than {ARGS.bound:.0f} s"))



def idle(port):
    s = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.4", 0))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    life = wait_closed(s, ARGS.bound)
    s.close()
    print("idle: a keep-alive connection idle after a request is closed after " +
          (f"{life:.1f} s" if life is not None else f"more than {ARGS.bound:.0f} s"))



def slow_reader(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/openapi.json")
    size = len(c.getresponse().read())
    c.close()
    s = socket.socket()
    s.bind(("127.0.0.5", 0))
    s.connect(("127.0.0.1", port))
    client_port = s.getsockname()[1]
    request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
    s.sendall(request * ARGS.pipelined)
    mine = f"( sport = :{port} and dport = :{client_port} )"
    began, peak, closed, gone = time.time(), 0, None, None
    while time.time() - began < ARGS.bound:
        lines = ss(mine, processes=True)
        if not lines:
            gone = time.time() - began
            closed = gone if closed is None else closed
            break
        peak = max(peak, int(lines[0][2]))
        if closed is None and "users:" not in lines[0][-1]:
            closed = time.time() - began
        time.sleep(0.1)
    s.close()
    seconds = lambda t: f"{t:.1f} s" if t is not None else f"> {ARGS.bound:.0f} s"
    print(f"slow_reader: {ARGS.pipelined} pipelined GET /openapi.json "
          f"({size} bytes each) never read: the proxy's socket held up to "
          f"{peak/1e6:.2f} MB unsent; closed by the proxy after "
          f"{seconds(closed)}, gone from the kernel after {seconds(gone)}")


try:
    main()
finally:
    for p in PROCS.values():
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
