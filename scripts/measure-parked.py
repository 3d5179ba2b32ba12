#!/usr/bin/env python3
"""Memory of a node holding many executions that wait on a slow dealer system.

Starts a loopback mock that answers after MOCK_DELAY_S seconds, a `dibop serve` (DIBOP_BIN,
default target/release/dibop; SQLite in a fresh data directory, or DATABASE_URL), queues
EXECUTIONS (default 10,000) executions of a one-step orchestration calling the mock, and
reports the server's resident memory (VmRSS, and the peak VmHWM) while they are parked:
running ones wait on the mock, the rest wait in the database. Only the standard library.

    cargo build --release && scripts/measure-parked.py
"""

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from dibop_http import admin, call, free_port, memory, serve, wait_ready

EXECUTIONS = int(os.environ.get("EXECUTIONS", "10000"))
MOCK_DELAY_S = float(os.environ.get("MOCK_DELAY_S", "120"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("DIBOP_BIN", os.path.join(ROOT, "target", "release", "dibop"))
EMAIL, PASSWORD = "parked@example.com", "Parked-Pass-42"


def start_mock(port, waiting):
    """An HTTP/1.1 server on loopback answering every request after MOCK_DELAY_S."""

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    return
                waiting[0] += 1
                waiting[1] = max(waiting[1], waiting[0])
                await asyncio.sleep(MOCK_DELAY_S)
                waiting[0] -= 1
                body = b'{"ok":true}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()


def main():
    if not os.access(BIN, os.X_OK):
        sys.exit(f"{BIN} missing: run `cargo build --release` or set DIBOP_BIN")
    mock_port, port = free_port(), free_port()
    waiting = [0, 0]
    start_mock(mock_port, waiting)
    data = tempfile.mkdtemp(prefix="dibop-parked-")
    server = serve(BIN, port, data, EMAIL, PASSWORD)
    try:
        wait_ready(port)
        idle = memory(server.pid)
        token = admin(port, EMAIL, PASSWORD)
        connection = {"name": "slow", "system": "rest", "allowed_hosts": [f"127.0.0.1:{mock_port}"],
                      "config": {"base_url": f"http://127.0.0.1:{mock_port}",
                                 "operations": {"check": {"method": "GET", "path": "/check/{vin}"}}}}
        assert call(port, "POST", "/api/v1/connections", connection, token)[0] == 201
        definition = {"name": "Parked", "parameters": [{"name": "vin", "type": "string", "required": True}],
                      "steps": [{"name": "check", "type": "api_call", "connection": "slow", "operation": "check",
                                 "timeout_ms": int(MOCK_DELAY_S * 1000) + 60000,
                                 "parameters": {"vin": "${parameters.vin}"}}]}
        status, created = call(port, "POST", "/api/v1/orchestrations", definition, token)
        assert status == 201, created
        path = f"/api/v1/orchestrations/{created['id']}/execute"

        started = time.monotonic()

        def submit(i):
            return call(port, "POST", path, {"parameters": {"vin": f"PARKED{i:011d}"}, "async": True}, token)[0]

        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(submit, range(EXECUTIONS)))
        accepted = statuses.count(202)
        took = time.monotonic() - started
        time.sleep(5)
        parked = memory(server.pid)
        print(f"executions accepted: {accepted} of {EXECUTIONS} in {took:.1f} s ({accepted / took:.0f}/s)")
        print(f"calls waiting at the mock: {waiting[0]} (most at once: {waiting[1]})")
        print(f"dibop RSS idle: {idle['VmRSS']} MiB; with {accepted} parked: {parked['VmRSS']} MiB "
              f"(peak {parked['VmHWM']} MiB)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
