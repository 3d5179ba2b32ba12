"""What the measuring scripts share: a free loopback port, and one JSON call to a local `dibop serve`."""

import http.client
import json
import socket


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None, token=None, timeout=60):
    """`method path` on 127.0.0.1:`port` with a JSON `body`; answers (status, parsed JSON or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, (json.loads(data) if data else None)


# Rate limits far above what a measurement sends (raising them needs platform rights).
LIMITS = {"rate_limits": {"api_requests_per_minute": 1000000, "executions_per_minute": 1000000,
                          "outbound_requests_per_minute": 1000000}}


def serve(binary, port, data_dir, email, password, **variables):
    """`binary serve` on loopback `port` with its data in `data_dir` and `email` as its first
    admin, logging warnings only, its output thrown away; `variables` are more environment
    (DATABASE_URL, DIBOP_SECRET_KEY, ...). Answers the process."""
    import os
    import subprocess

    env = dict(os.environ, DIBOP_LISTEN=f"127.0.0.1:{port}", DIBOP_DATA_DIR=data_dir, DIBOP_ADMIN_EMAIL=email,
               DIBOP_ADMIN_PASSWORD=password, DIBOP_JWT_SECRET="measure-secret-0123456789abcdef0123456789",
               DIBOP_ALLOW_PRIVATE_NETWORKS="true", DIBOP_LOG="warn", **variables)
    return subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(port, tries=600):
    """Waits until `dibop serve` on `port` answers /readyz with 200 (at most `tries` tenths of a second)."""
    import time

    for _ in range(tries):
        try:
            if call(port, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"dibop on port {port} did not become ready")


def admin(port, email, password):
    """The access token of the first admin `email` of a node on `port` that is ready, with the
    rate limits of its enterprise raised to `LIMITS`."""
    token = login(port, email, password)
    status, body = call(port, "PUT", "/api/v1/settings", LIMITS, token)
    assert status == 200, body
    return token


def memory(pid):
    """The resident memory of process `pid` now (VmRSS) and at its peak (VmHWM), in MiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) // 1024
    return fields


def login(port, email, password):
    """The access token of `email`."""
    status, body = call(port, "POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert status == 200, body
    return body["access_token"]


def json_server(answer):
    """A threaded HTTP/1.1 server on a free loopback port whose every GET answers 200 with the
    bytes `answer(path)` gives (JSON); answers (server, port). Stop it with `server.shutdown()`."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = answer(self.path)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port
