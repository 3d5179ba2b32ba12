#!/usr/bin/env python3
"""Fairness between tenants under a flood, on several nodes of one PostgreSQL database.

Starts NODES (default 3) `dibop serve` processes (DIBOP_BIN, default target/release/dibop) on a
fresh database of the PostgreSQL at PG_URL (default postgres://postgres@127.0.0.1:5432), and a
loopback mock system that answers at once. Enterprise A (the first one) gets a connection
limited to FLOOD_RATE calls a second (default 50); enterprise B one without a limit. B runs a
steady trickle of synchronous executions (TRICKLE_HZ a second, default 0.9: B keeps the default
quota of 60 executions a minute, which only platform rights in B could raise) alone for IDLE_S
seconds (default 60; its first two executions on each node are not counted), then A submits FLOOD (default 5,000) asynchronous executions of a
one-call orchestration and the trickle goes on until all of A's executions have ended.
The mock, B's trickle and A's submitters run in three processes: in one Python process their
threads would share one interpreter lock, and B's timings (and the mock's answers to B) would
wait on A's submitters at the flood's start instead of on DIBOP.
Reports B's latency alone and during the flood (p50, p99; the ratio of the p99s is what the
flow-control issue bounds by 2) and how A's executions ended. Only the standard library.

    cargo build --release && scripts/measure-fairness.py
"""

import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from dibop_http import admin, call, free_port, json_server, login, serve, wait_ready

NODES = int(os.environ.get("NODES", "3"))
FLOOD = int(os.environ.get("FLOOD", "5000"))
FLOOD_RATE = int(os.environ.get("FLOOD_RATE", "50"))
TRICKLE_HZ = float(os.environ.get("TRICKLE_HZ", "0.9"))
IDLE_S = float(os.environ.get("IDLE_S", "60"))
WARMUP = NODES * 2
PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("DIBOP_BIN", os.path.join(ROOT, "target", "release", "dibop"))
EMAIL, PASSWORD = "fair@example.com", "Fair-Pass-42"
B_EMAIL = "admin@b.example"

def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


def psql(sql):
    subprocess.run(["psql", f"{PG_URL}/postgres", "-qc", sql], check=True, stdout=subprocess.DEVNULL)


def tenant(port, token, mock, name, rate_limit):
    """A connection `name` to the mock and a one-call orchestration on it; answers its execute path."""
    connection = {"name": name, "system": "rest", "allowed_hosts": [f"127.0.0.1:{mock}"],
                  "resilience": {"rate_limit": rate_limit},
                  "config": {"base_url": f"http://127.0.0.1:{mock}",
                             "operations": {"hit": {"method": "GET", "path": "/hit/{id}"}}}}
    status, body = call(port, "POST", "/api/v1/connections", connection, token)
    assert status == 201, body
    definition = {"name": f"Call {name}", "parameters": [{"name": "id", "type": "string", "required": True}],
                  "steps": [{"name": "hit", "type": "api_call", "connection": name, "operation": "hit",
                             "parameters": {"id": "${parameters.id}"}}]}
    status, created = call(port, "POST", "/api/v1/orchestrations", definition, token)
    assert status == 201, created
    return created["id"]


def serve_mock(port_out, stop):
    """The mock system in a process of its own: every GET answers at once."""
    server, port = json_server(lambda _path: b'{"ok":true}')
    port_out.put(port)
    stop.wait()
    server.shutdown()


def trickle(ports, trickle_id, b_token, phase, started, stop, out):
    """B's trickle in a process of its own: one synchronous execution every 1/TRICKLE_HZ s,
    round robin over the nodes; `phase` (0 idle, 1 A submits, 2 A drains) and `started` (when
    the flood began, monotonic) are shared with the main process. Puts (latencies by phase,
    (ms, s after the flood began, port) of each flooded sample, failures) on `out` at the end."""
    names = ("idle", "submitting", "draining")
    latencies = {name: [] for name in names}
    slowest, failures = [], []
    i = 0
    while not stop.is_set():
        began = time.monotonic()
        port = ports[i % len(ports)]
        status, body = call(port, "POST", f"/api/v1/orchestrations/{trickle_id}/execute",
                            {"parameters": {"id": f"b{i}"}}, b_token)
        took = (time.monotonic() - began) * 1000
        if status == 200 and body.get("status") == "success":
            # The first few warm the nodes up (plugin instances, connections).
            if i >= WARMUP:
                name = names[phase.value]
                latencies[name].append(took)
                if name != "idle":
                    slowest.append((took, began - started.value, port))
        else:
            failures.append((status, body))
        i += 1
        time.sleep(max(0.0, 1 / TRICKLE_HZ - (time.monotonic() - began)))
    out.put((latencies, slowest, failures))


def main():
    if not os.access(BIN, os.X_OK):
        sys.exit(f"{BIN} missing: run `cargo build --release` or set DIBOP_BIN")
    processes = multiprocessing.get_context("fork")
    mock_stop, mock_port = processes.Event(), processes.Queue()
    mock_process = processes.Process(target=serve_mock, args=(mock_port, mock_stop), daemon=True)
    mock_process.start()
    mock = mock_port.get(timeout=10)
    database = f"dibop_fair_{uuid.uuid4().hex[:12]}"
    psql(f'CREATE DATABASE "{database}"')
    data = tempfile.TemporaryDirectory(prefix="dibop-fair-")
    ports = [free_port() for _ in range(NODES)]
    nodes = []
    try:
        for i, port in enumerate(ports):
            nodes.append(serve(BIN, port, os.path.join(data.name, str(i)), EMAIL, PASSWORD,
                               DATABASE_URL=f"{PG_URL}/{database}",
                               DIBOP_SECRET_KEY="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="))
            # The first node migrates the database before the others start.
            wait_ready(port)
        a_token = admin(ports[0], EMAIL, PASSWORD)
        status, body = call(ports[0], "POST", "/api/v1/enterprises",
                            {"name": "Enterprise B", "slug": "b", "admin_email": B_EMAIL, "admin_password": PASSWORD},
                            a_token)
        assert status == 201, body
        b_token = login(ports[0], B_EMAIL, PASSWORD)
        flood_id = tenant(ports[0], a_token, mock, "dms", {"requests_per_second": FLOOD_RATE})
        trickle_id = tenant(ports[0], b_token, mock, "fast", None)

        phase = processes.Value("i", 0)
        started = processes.Value("d", time.monotonic())
        stop, results = processes.Event(), processes.Queue()
        worker = processes.Process(target=trickle, daemon=True,
                                   args=(ports, trickle_id, b_token, phase, started, stop, results))
        worker.start()
        time.sleep(IDLE_S)
        started.value = time.monotonic()
        phase.value = 1
        began = started.value

        def submit(i):
            return call(ports[i % NODES], "POST", f"/api/v1/orchestrations/{flood_id}/execute",
                        {"parameters": {"id": f"a{i}"}, "async": True}, a_token)[0]

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(submit, range(FLOOD)))
        submitted = time.monotonic() - began
        phase.value = 2
        ended = {}
        while True:
            ended = {}
            for status in ("success", "failed", "cancelled", "partial"):
                _, page = call(ports[0], "GET",
                               f"/api/v1/orchestrations/{flood_id}/executions?status={status}&page_size=1", None,
                               a_token)
                ended[status] = page["pagination"]["total"]
            if sum(ended.values()) >= statuses.count(202):
                break
            time.sleep(1)
        drained = time.monotonic() - began
        stop.set()
        latencies, slowest, failures = results.get(timeout=60)
        worker.join()
        idle, flood = latencies["idle"], latencies["submitting"] + latencies["draining"]
        print(f"nodes: {NODES} on PostgreSQL; A's connection {FLOOD_RATE} calls/s; B's trickle {TRICKLE_HZ}/s")
        print(f"A: {statuses.count(202)} of {FLOOD} accepted in {submitted:.1f} s; ended {ended} "
              f"after {drained:.1f} s ({statuses.count(202) / drained:.1f}/s)")
        phases = (("B alone:     ", idle), ("B, A submits:", latencies["submitting"]),
                  ("B, A drains: ", latencies["draining"]), ("B flooded:   ", flood))
        for name, values in phases:
            print(f"{name} {len(values)} executions, p50 {percentile(values, 0.5):.1f} ms, "
                  f"p90 {percentile(values, 0.9):.1f} ms, p99 {percentile(values, 0.99):.1f} ms, "
                  f"max {max(values, default=float('nan')):.1f} ms")
        print("B's slowest while flooded (ms, s after the flood began, node):",
              ", ".join(f"{took:.0f} at {at:.1f} s on {ports.index(port)}" for took, at, port in sorted(slowest)[-5:]))
        print(f"B's p99 flooded / alone: {percentile(flood, 0.99) / percentile(idle, 0.99):.2f}; "
              f"B's failures: {len(failures)} {failures[:3]}")
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill()
        mock_stop.set()
        mock_process.join(timeout=5)
        psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        data.cleanup()


if __name__ == "__main__":
    main()
