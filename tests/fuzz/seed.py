"""Creates one resource of each kind on a fresh server so that the fuzzer's requests reach the
handlers behind `/{id}` instead of stopping at 404, and prints their ids as `NAME=value` lines
for tests/fuzz/schemathesis.toml. Operations that delete get a resource of their own.

Usage: seed.py BASE_URL TOKEN (BASE_URL is a loopback address; nothing else is contacted).
"""

import json
import sys
import urllib.error
import urllib.request

base, token = sys.argv[1], sys.argv[2]
assert base.startswith("http://127.0.0.1:"), base


def call(method, path, body=None, expect=(200, 201, 202)):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/api/v1{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read()
    if status not in expect:
        sys.exit(f"seed: {method} {path} answered {status}: {text[:500]!r}")
    return json.loads(text) if text else None


ids = {}


def orchestration(name, steps, parameters=()):
    return call("POST", "/orchestrations", {"name": name, "parameters": list(parameters), "steps": steps})["id"]


echo = [{"name": "echo", "type": "transform", "transform": "map",
         "mapping": {"vin": "${parameters.vin}"}}]
vin = [{"name": "vin", "type": "string"}]
ids["FUZZ_ORCHESTRATION"] = orchestration("Echo", echo, vin)
ids["FUZZ_ORCHESTRATION_DELETE"] = orchestration("Echo to delete", echo, vin)
# A long wait parks its execution: something to cancel.
parked = orchestration("Park", [{"name": "pause", "type": "wait", "duration_ms": 3_600_000}])

ids["FUZZ_EXECUTION"] = call("POST", f"/orchestrations/{ids['FUZZ_ORCHESTRATION']}/execute",
                             {"parameters": {"vin": "1HGCM82633A004352"}})["execution_id"]
ids["FUZZ_EXECUTION_PARKED"] = call("POST", f"/orchestrations/{parked}/execute", {"async": True})["execution_id"]

for key, name in (("FUZZ_WEBHOOK", "events"), ("FUZZ_WEBHOOK_DELETE", "events to delete")):
    webhook = call("POST", "/webhooks", {"name": name, "orchestration_id": ids["FUZZ_ORCHESTRATION"],
                                         "signature": "none", "parameters": {"vin": "${body.vin}"}})
    ids[key], ids[f"{key}_SECRET"] = webhook["id"], webhook["secret"]

for key, name in (("FUZZ_CONNECTION", "vpic"), ("FUZZ_CONNECTION_DELETE", "vpic to delete")):
    ids[key] = call("POST", "/connections", {"name": name, "system": "vpic",
                                             "credentials": {"api_key": "fuzz-api-key"}})["id"]

for key, name in (("FUZZ_ALERT_RULE", "Failures"), ("FUZZ_ALERT_RULE_DELETE", "Failures to delete")):
    ids[key] = call("POST", "/alert-rules", {"name": name, "type": "execution_failure",
                                             "notification": {"channels": [{"type": "log"}]}})["id"]

ids["FUZZ_CANONICAL"] = call("POST", "/canonical/vehicle", {"vin": "1HGCM82633A004352", "make": "HONDA",
                                                            "model": "Accord", "year": 2003})["id"]

for key, email in (("FUZZ_USER", "fuzz-user@dibop.test"), ("FUZZ_USER_DELETE", "fuzz-gone@dibop.test")):
    ids[key] = call("POST", "/users", {"email": email, "name": "Fuzz", "role": "viewer",
                                       "password": "fuzz-user-password"})["id"]

ids["FUZZ_API_KEY_DELETE"] = call("POST", "/settings/api-keys", {"name": "fuzz", "role": "viewer"})["id"]

ids["FUZZ_ENTERPRISE"] = call("POST", "/enterprises", {"name": "Fuzz Motors", "admin_email": "fuzz@motors.test",
                                                       "admin_password": "fuzz-motors-password"})["id"]

# Plugins: read the vpic connector the connections use; disable a bundled one nothing here uses.
plugins = call("GET", "/plugins?page_size=200")["data"]
ids["FUZZ_PLUGIN"] = next(p["id"] for p in plugins if p["slug"] == "vpic")
ids["FUZZ_PLUGIN_DELETE"] = next(p["id"] for p in plugins if p["slug"] != "vpic")

for key, value in ids.items():
    print(f"{key}={value}")
