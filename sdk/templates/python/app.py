"""{{name}}: a DIBOP connector in Python, with one operation, `get_item`, reading
`GET {base_url}/items/{id}` with an optional API key. Replace the settings and operations with
your system's; `dibop connector build` turns this folder into dist/{{slug}}.wasm.

Each operation gets the input (already checked against its input_schema) and answers a JSON
value. `raise dibop.plugin_error(code, message)` for an expected failure; any other exception
is a bug: the step fails `trap` with its message and the lines of your files.
"""

import json
from urllib.parse import quote

import wit_world
from wit_world.imports import dibop_plugin_types as t

import dibop


def item_url(base, item_id):
    """The URL of one item: the id is percent-encoded, so it cannot change the path."""
    return f"{base.rstrip('/')}/items/{quote(item_id, safe='')}"


def headers():
    key = dibop.secret("api_key")
    return {"Accept": "application/json", **({"X-Api-Key": key} if key else {})}


def get_item(data):
    dibop.log("info", "reading an item", id=data["id"])
    response = dibop.http("GET", item_url(dibop.config("base_url"), data["id"]), headers())
    if response.status == 404:
        raise dibop.plugin_error("not_found", f"no item {data['id']}", http_status=404)
    if not response.ok:
        raise dibop.upstream_error(response.status, f"the API answered HTTP {response.status}")
    return response.json()


OPERATIONS = {"get_item": get_item}


class WitWorld(wit_world.WitWorld):
    def describe(self) -> t.ConnectorInfo:
        return t.ConnectorInfo(
            slug="{{slug}}",
            name="{{name}}",
            system_type=t.SystemType.GENERAL,
            version="0.1.0",
            description="Reads items from the Example API.",
            auth=t.AuthType.API_KEY,
            config=[
                t.ConfigKey(name="base_url", description="Base URL of the API, e.g. https://api.example.com",
                            required=True, secret=False),
                t.ConfigKey(name="api_key", description="API key, sent as X-Api-Key", required=False, secret=True),
            ],
            operations=[
                t.Operation(
                    name="get_item",
                    method="GET",
                    path="/items/{id}",
                    description="Reads one item by id.",
                    input_schema=json.dumps(
                        {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
                    ),
                    output_schema=json.dumps({"type": "object"}),
                )
            ],
        )

    def invoke(self, operation: str, input: str, context: t.CallContext) -> str:
        run = OPERATIONS.get(operation)
        if run is None:
            raise dibop.plugin_error("invalid_input", f"unknown operation `{operation}`")
        return json.dumps(run(json.loads(input)))

    def capabilities(self) -> str:
        # The hosts it reaches ("api.example.com", "*.example.com") and the memory a call wants:
        # a connection's hosts must fit them, and a version that declares more waits for an
        # admin's approval. "*" leaves the hosts to each connection's allowed_hosts.
        return json.dumps({"hosts": ["*"], "memory_mb": 64})

    def ping(self) -> t.Health:
        try:
            response = dibop.http("GET", f"{dibop.config('base_url').rstrip('/')}/health", headers())
        except dibop.Err as e:
            return t.Health(status=t.HealthStatus.OFFLINE, message=e.value.message)
        if response.status in (401, 403):
            return t.Health(status=t.HealthStatus.AUTH_ERROR, message=f"HTTP {response.status}")
        status = t.HealthStatus.ONLINE if response.ok else t.HealthStatus.OFFLINE
        return t.Health(status=status, message=None if response.ok else f"HTTP {response.status}")
