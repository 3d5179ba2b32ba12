#!/usr/bin/env python3
"""Storage cost of one execution of the bundled example.

Starts `dibop demo` (DIBOP_BIN, default target/debug/dibop; SQLite in a fresh data directory,
or DATABASE_URL for PostgreSQL), which sets up the sandbox dealer system and the "Vehicle
lookup" orchestration of examples/vehicle-lookup.json; runs EXECUTIONS (default 1,000) more
executions of it and reports the database's growth per execution: on SQLite the used pages
(page_count - freelist_count) times the page size, on PostgreSQL pg_database_size after a
VACUUM. Only the standard library (and psql on PostgreSQL).

    cargo build -p dibop --bin dibop && scripts/measure-storage.py
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from dibop_http import call, free_port

EXECUTIONS = int(os.environ.get("EXECUTIONS", "1000"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("DIBOP_BIN", os.path.join(ROOT, "target", "debug", "dibop"))
DATABASE_URL = os.environ.get("DATABASE_URL", "")
EMAIL, PASSWORD = "storage@example.com", "Storage-Pass-42"
VIN = "1HGCM82633A004352"


def used_bytes(data_dir):
    if DATABASE_URL:
        subprocess.run(["psql", DATABASE_URL, "-qc", "VACUUM"], check=True)
        out = subprocess.run(["psql", DATABASE_URL, "-tAc", "SELECT pg_database_size(current_database())"],
                             check=True, capture_output=True, text=True)
        return int(out.stdout.strip())
    db = sqlite3.connect(f"file:{os.path.join(data_dir, 'dibop.db')}?mode=ro", uri=True)
    pages, free, size = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size"))
    db.close()
    return (pages - free) * size


def main():
    data_dir = tempfile.mkdtemp(prefix="dibop-storage-")
    port = free_port()
    env = dict(os.environ, DIBOP_DATA_DIR=data_dir, DIBOP_LISTEN=f"127.0.0.1:{port}", DIBOP_ADMIN_EMAIL=EMAIL,
               DIBOP_ADMIN_PASSWORD=PASSWORD, DIBOP_LOG="warn")
    server = subprocess.Popen([BIN, "demo"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        token = None
        for _ in range(600):
            try:
                status, body = call(port, "POST", "/api/v1/auth/login", {"email": EMAIL, "password": PASSWORD})
                orchestrations = call(port, "GET", "/api/v1/orchestrations", token=body["access_token"])[1]
                if status == 200 and orchestrations["data"]:
                    token = body["access_token"]
                    break
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(0.1)
        if token is None:
            sys.exit("the demo did not start")
        orchestration = orchestrations["data"][0]["id"]
        status, body = call(port, "PUT", "/api/v1/settings", {"rate_limits": {"api_requests_per_minute": 1000000,
                                                               "executions_per_minute": 1000000,
                                                               "outbound_requests_per_minute": 1000000}}, token)
        if status != 200:
            sys.exit(f"raising the rate limits: {status} {body}")
        time.sleep(1)
        before = used_bytes(data_dir)

        def run(_):
            status, body = call(port, "POST", f"/api/v1/orchestrations/{orchestration}/execute",
                                {"parameters": {"vin": VIN}}, token)
            return f"{status} {body.get('status') or body.get('error', {}).get('code')}"

        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(run, range(EXECUTIONS)))
        ok = answers.count("200 success")
        if ok < EXECUTIONS:
            print("answers:", {a: answers.count(a) for a in set(answers)})
        took = time.time() - started
        time.sleep(1)
        after = used_bytes(data_dir)
        backend = "PostgreSQL" if DATABASE_URL else "SQLite"
        print(f"{backend}: {ok}/{EXECUTIONS} executions succeeded in {took:.1f} s")
        print(f"used before: {before} bytes, after: {after} bytes")
        print(f"per execution: {(after - before) / EXECUTIONS:.0f} bytes")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
