"""Helpers for DIBOP connectors written in Python and built with componentize-py.

`http` sends an ordinary-looking HTTP request through the host's `wasi:http` (the host applies
the connection's allow-list, limits and logging); `config`, `secret` and `log` wrap the host
interfaces; `PluginError` is raised to fail an operation with a code the engine understands.
"""

import json as _json
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import config as _config
from wit_world.imports import dibop_plugin_types as types
from wit_world.imports import log as _log
from wit_world.imports import outgoing_handler
from wit_world.imports import secrets as _secrets
from wit_world.imports import wasi_http_types as http_types
from wit_world.imports.streams import StreamError_Closed


def plugin_error(code, message, retryable=False, http_status=None):
    """The error an operation raises: `raise plugin_error("not_found", "...")`."""
    return Err(types.PluginError(code=code, message=message, retryable=retryable, http_status=http_status))


def upstream_error(status, message):
    """An error answer of the remote system: 5xx and 429 are retryable."""
    code = "not_found" if status == 404 else "auth" if status in (401, 403) else "upstream"
    return plugin_error(code, message, retryable=status >= 500 or status == 429, http_status=status)


def config(key, default=None):
    """A configuration value of the connection (decoded from its JSON), or `default`."""
    value = _config.get(key)
    return default if value is None else _json.loads(value)


def secret(name):
    """A credential of the connection, or None."""
    return _secrets.get(name)


def log(level, message, **fields):
    """Writes a log line (level: trace, debug, info, warn, error) with JSON fields."""
    _log.write(getattr(_log.Level, level.upper()), message, _json.dumps(fields))


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ok(self):
        return 200 <= self.status < 300

    def json(self):
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise plugin_error("upstream", f"the answer is not JSON: {e}")


_METHODS = {
    "GET": http_types.Method_Get(),
    "POST": http_types.Method_Post(),
    "PUT": http_types.Method_Put(),
    "DELETE": http_types.Method_Delete(),
    "PATCH": http_types.Method_Patch(),
    "HEAD": http_types.Method_Head(),
}


def http(method, url, headers=None, body=None):
    """Sends one request and answers a `Response`; a refused or failed request raises a
    `plugin_error` (code `network`, or `forbidden` when the host's allow-list refused it)."""
    parts = urlsplit(url)
    fields = http_types.Fields.from_list([(k, v.encode()) for k, v in (headers or {}).items()])
    request = http_types.OutgoingRequest(fields)
    request.set_method(_METHODS.get(method.upper()) or http_types.Method_Other(method.upper()))
    request.set_scheme(http_types.Scheme_Https() if parts.scheme == "https" else http_types.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    outgoing = request.body()
    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        raise _network_error(e.value)
    if body is not None:
        data = body if isinstance(body, bytes) else body.encode()
        stream = outgoing.write()
        for start in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[start:start + 4096])
        stream.__exit__(None, None, None)
    http_types.OutgoingBody.finish(outgoing, None)
    future.subscribe().block()
    answer = future.get()
    if answer is None or isinstance(answer, Err) or isinstance(answer.value, Err):
        error = answer.value if isinstance(answer, Err) else answer.value.value if answer else "no answer"
        raise _network_error(error)
    incoming = answer.value.value
    status = incoming.status()
    response_headers = {k: v.decode(errors="replace") for k, v in incoming.headers().entries()}
    incoming_body = incoming.consume()
    stream = incoming_body.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(65536))
        except Err as e:
            if isinstance(e.value, StreamError_Closed):
                break
            raise plugin_error("network", f"reading the answer failed: {e.value}")
    return Response(status, response_headers, b"".join(chunks))


def _network_error(error):
    name = type(error).__name__
    if name == "ErrorCode_HttpRequestDenied":
        return plugin_error("forbidden", "the host refused the request (not on the connection's allow-list)")
    return plugin_error("network", f"the request failed: {name}", retryable=True)
