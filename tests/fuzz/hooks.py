"""Schemathesis hooks of scripts/fuzz.sh (loaded through SCHEMATHESIS_HOOKS)."""

import schemathesis


@schemathesis.serializer("application/wasm")
def wasm(ctx, value):
    """`POST /plugins` takes the component's bytes as they are (`format: binary`)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    data = getattr(value, "data", None)  # schemathesis' Binary wrapper
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    return str(value).encode("utf-8")


# The fuzzer's admin has platform rights, so a valid `PUT /settings` may lower the enterprise's
# own rate limits to 1 request a minute, after which every later request would only see 429.
# Valid limits keep their shape and validity but are raised to the maximum; invalid ones (out of
# range, wrong type) are sent as generated.
MAX_RATE = 1_000_000


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.method.upper() != "PUT" or not case.path.endswith("/settings"):
        return
    body = case.body if isinstance(case.body, dict) else None
    limits = body.get("rate_limits") if body else None
    if not isinstance(limits, dict):
        return
    for key in ("api_requests_per_minute", "executions_per_minute"):
        value = limits.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_RATE:
            limits[key] = MAX_RATE
