"""`vpic-py`: the vPIC VIN decoder connector written in Python (a twin of the Rust `vpic`).

Connection settings: `base_url` (default https://vpic.nhtsa.dot.gov/api) and the optional
credential `api_key`, sent as `X-Api-Key`. Operation `decode_vin` (`{"vin": "..."}`) answers
`{"vin", "make", "model", "year", "trim", "body_class", "engine_type", "fuel_type"}`.
"""

import json
import re

import wit_world
from wit_world.imports import dibop_plugin_types as t

import dibop

DEFAULT_BASE_URL = "https://vpic.nhtsa.dot.gov/api"
VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
NULLABLE = {"type": ["string", "null"]}


def base_url():
    url = str(dibop.config("base_url") or "").strip().rstrip("/")
    return url or DEFAULT_BASE_URL


def headers():
    key = dibop.secret("api_key")
    return {"Accept": "application/json", **({"X-Api-Key": key} if key else {})}


def text(result, name):
    value = result.get(name)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def engine_summary(result):
    parts = []
    litres = text(result, "DisplacementL")
    if litres:
        try:
            parts.append(f"{float(litres):.1f}L")
        except ValueError:
            parts.append(f"{litres}L")
    if text(result, "EngineConfiguration"):
        parts.append(text(result, "EngineConfiguration"))
    if text(result, "EngineCylinders"):
        parts.append(f"{text(result, 'EngineCylinders')}-cyl")
    return " ".join(parts) or None


def summarize(vin, answer):
    results = answer.get("Results") or []
    result = results[0] if results else {}
    make = text(result, "Make")
    if not make:
        raise dibop.plugin_error("not_found", f"vPIC knows no vehicle for VIN {vin}")
    year = text(result, "ModelYear")
    return {
        "vin": vin,
        "make": make,
        "model": text(result, "Model"),
        "year": int(year) if year and year.isdigit() else year,
        "trim": text(result, "Trim"),
        "body_class": text(result, "BodyClass"),
        "engine_type": text(result, "EngineModel") or engine_summary(result),
        "fuel_type": text(result, "FuelTypePrimary"),
    }


def decode_vin(data):
    vin = data.get("vin")
    if not isinstance(vin, str):
        raise dibop.plugin_error("invalid_input", "the input needs a string field `vin`")
    vin = vin.strip().upper()
    if not VIN.match(vin):
        raise dibop.plugin_error(
            "invalid_input", f'"{vin}" is not a VIN: expected 17 letters or digits, without I, O or Q'
        )
    dibop.log("debug", "decoding", vin=vin)
    response = dibop.http("GET", f"{base_url()}/vehicles/DecodeVinValues/{vin}?format=json", headers())
    if not response.ok:
        raise dibop.upstream_error(response.status, f"vPIC answered HTTP {response.status} for VIN {vin}")
    return summarize(vin, response.json())


class WitWorld(wit_world.WitWorld):
    def describe(self) -> t.ConnectorInfo:
        return t.ConnectorInfo(
            slug="vpic-py",
            name="NHTSA vPIC (Python)",
            system_type=t.SystemType.GENERAL,
            version="1.0.0",
            description="Decodes VINs with the NHTSA vPIC API; written in Python.",
            auth=t.AuthType.NONE,
            config=[
                t.ConfigKey("base_url", f"Base URL of the vPIC API (default {DEFAULT_BASE_URL})", False, False),
                t.ConfigKey("api_key", "Optional key sent as the X-Api-Key header", False, True),
            ],
            operations=[
                t.Operation(
                    name="decode_vin",
                    method="GET",
                    path="/vehicles/DecodeVinValues/{vin}",
                    description="Decodes a 17-character VIN into make, model, model year, trim, body, engine and fuel.",
                    input_schema=json.dumps(
                        {"type": "object", "required": ["vin"],
                         "properties": {"vin": {"type": "string", "pattern": "^[A-HJ-NPR-Za-hj-npr-z0-9]{17}$"}}}
                    ),
                    output_schema=json.dumps(
                        {"type": "object",
                         "properties": {"vin": {"type": "string"}, "make": NULLABLE, "model": NULLABLE,
                                        "year": {"type": ["integer", "string", "null"]}, "trim": NULLABLE,
                                        "body_class": NULLABLE, "engine_type": NULLABLE, "fuel_type": NULLABLE}}
                    ),
                ),
                t.Operation(
                    name="echo",
                    method="NONE",
                    path="",
                    description="Answers its input without any request (for timing a bare call).",
                    input_schema=json.dumps({"type": "object"}),
                    output_schema=json.dumps({"type": "object"}),
                ),
            ],
        )

    def invoke(self, operation: str, input: str, context: t.CallContext) -> str:
        if operation == "echo":
            return input
        if operation != "decode_vin":
            raise dibop.plugin_error("invalid_input", f"unknown operation `{operation}`; vpic-py offers `decode_vin`")
        try:
            data = json.loads(input)
        except ValueError as e:
            raise dibop.plugin_error("invalid_input", f"the input is not JSON: {e}")
        return json.dumps(decode_vin(data))

    def ping(self) -> t.Health:
        try:
            response = dibop.http("GET", f"{base_url()}/vehicles/GetMakesForVehicleType/car?format=json", headers())
        except Exception as e:  # a refused or failed request
            return t.Health(t.HealthStatus.OFFLINE, str(getattr(e, "value", e)))
        if response.status in (401, 403):
            return t.Health(t.HealthStatus.AUTH_ERROR, f"HTTP {response.status}")
        if response.ok:
            return t.Health(t.HealthStatus.ONLINE, None)
        return t.Health(t.HealthStatus.OFFLINE, f"HTTP {response.status}")
