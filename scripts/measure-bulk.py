#!/usr/bin/env python3
"""Memory and time of bulk work inside one execution.

Starts a loopback mock dealer system whose stock list (`GET /stock`) is ITEMS vehicles of about
2 KB each (default 10,000: about 20 MB) and a `dibop serve` (DIBOP_BIN, default
target/release/dibop; SQLite in a fresh data directory, or DATABASE_URL). Then runs, one after
the other:

1. an execution that fetches the list and maps every vehicle in a `for_each` (concurrency 20);
2. an execution that fetches it and prices the first PRICED vehicles (default 200) with one call
   each to the dealer, whose connection allows RATE calls a second (default 5), concurrency 20.

Reports each one's time and the server's resident memory (VmRSS after, and the peak VmHWM).
Only the standard library.

    cargo build --release && scripts/measure-bulk.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from dibop_http import admin, call, free_port, json_server, memory, serve, wait_ready

ITEMS = int(os.environ.get("ITEMS", "10000"))
PRICED = int(os.environ.get("PRICED", "200"))
RATE = int(os.environ.get("RATE", "5"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("DIBOP_BIN", os.path.join(ROOT, "target", "release", "dibop"))
EMAIL, PASSWORD = "bulk@example.com", "Bulk-Pass-42"
STOCK = json.dumps({"vehicles": [{"id": f"v{i}", "vin": f"VIN{i:014d}", "notes": "n" * 1950}
                                 for i in range(ITEMS)]}).encode()


def dealer(path):
    """The mock dealer: the stock list, or one vehicle's price."""
    return STOCK if path == "/stock" else json.dumps({"id": path.rsplit("/", 1)[-1]}).encode()


def run(port, token, orchestration):
    """Executes `orchestration` asynchronously and waits for its end; answers (status, seconds)."""
    began = time.monotonic()
    status, started = call(port, "POST", f"/api/v1/orchestrations/{orchestration}/execute", {"async": True}, token)
    assert status == 202, started
    while True:
        _, listed = call(port, "GET", f"/api/v1/orchestrations/{orchestration}/executions?page_size=1", None, token)
        state = listed["data"][0]["status"]
        if state not in ("queued", "running"):
            return state, time.monotonic() - began
        time.sleep(0.5)


def main():
    if not os.access(BIN, os.X_OK):
        sys.exit(f"{BIN} missing: run `cargo build --release` or set DIBOP_BIN")
    mock_server, mock = json_server(dealer)
    port = free_port()
    data = tempfile.mkdtemp(prefix="dibop-bulk-")
    server = serve(BIN, port, data, EMAIL, PASSWORD)
    try:
        wait_ready(port)
        idle = memory(server.pid)
        token = admin(port, EMAIL, PASSWORD)
        connection = {"name": "dealer", "system": "rest", "allowed_hosts": [f"127.0.0.1:{mock}"],
                      "memory_limit_mb": 256, "resilience": {"rate_limit": {"requests_per_second": RATE}},
                      "config": {"base_url": f"http://127.0.0.1:{mock}",
                                 "operations": {"stock": {"method": "GET", "path": "/stock"},
                                                "price": {"method": "GET", "path": "/v/{id}"}}}}
        status, body = call(port, "POST", "/api/v1/connections", connection, token)
        assert status == 201, body
        fetch = {"name": "fetch", "type": "api_call", "connection": "dealer", "operation": "stock", "parameters": {}}
        mapped = {"name": "Map the stock", "steps": [fetch, {
            "name": "each", "type": "for_each", "items": "${fetch.response.vehicles}", "concurrency": 20,
            "steps": [{"name": "row", "type": "transform", "transform": "map",
                       "mapping": {"n": "${index}", "vin": "${item.vin}"}}]}]}
        priced = {"name": "Price the stock", "steps": [fetch, {
            "name": "each", "type": "for_each", "items": f"${{fetch.response.vehicles[0:{PRICED}]}}",
            "concurrency": 20,
            "steps": [{"name": "price", "type": "api_call", "connection": "dealer", "operation": "price",
                       "parameters": {"id": "${item.id}"}}]}]}
        print(f"stock list: {ITEMS} vehicles, {len(STOCK) / 1e6:.1f} MB; dibop RSS idle {idle['VmRSS']} MiB")
        for definition, what in ((mapped, f"map {ITEMS} items"), (priced, f"price {PRICED} items at {RATE}/s")):
            status, created = call(port, "POST", "/api/v1/orchestrations", definition, token)
            assert status == 201, created
            state, took = run(port, token, created["id"])
            after = memory(server.pid)
            print(f"{what}: {state} in {took:.1f} s; RSS after {after['VmRSS']} MiB, peak so far {after['VmHWM']} MiB")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        mock_server.shutdown()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
