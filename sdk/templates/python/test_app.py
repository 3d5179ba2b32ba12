"""Unit tests of the connector under plain Python: `python3 -m unittest` in this folder.

Inside the component, `wit_world` and `componentize_py_types` are generated bindings; here they
are stand-ins that build plain records, so `app.py` and `dibop.py` import unchanged and the
network calls go to a fake `dibop.http`.
"""

import sys
import types
import unittest


class _Any(type):
    def __getattr__(cls, name):
        return cls


class _Record(metaclass=_Any):
    """Stands for any generated type: constructing one keeps its fields."""

    def __init__(self, *args, **fields):
        self.args = args
        self.__dict__.update(fields)


class _Err(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


def _module(name, **attributes):
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    module.__getattr__ = lambda _name: _Record
    sys.modules[name] = module
    return module


_module("componentize_py_types", Err=_Err, Ok=_Record)
_module("wit_world", WitWorld=object)
_module("wit_world.imports")
_module("wit_world.imports.streams")

import app  # noqa: E402  (after the stand-ins)
import dibop  # noqa: E402


class GetItem(unittest.TestCase):
    def setUp(self):
        self.requests = []
        settings = {"base_url": "https://api.example.com/"}
        dibop.config = lambda key, default=None: settings.get(key, default)
        dibop.secret = lambda name: "key-1" if name == "api_key" else None
        dibop.log = lambda *args, **fields: None

        def http(method, url, headers=None, body=None):
            self.requests.append((method, url, headers.get("X-Api-Key")))
            if url.endswith("/42"):
                return dibop.Response(200, {}, b'{"id": "42", "name": "Wheel"}')
            return dibop.Response(404, {}, b"")

        dibop.http = http

    def test_an_id_cannot_leave_the_items_path(self):
        self.assertEqual(app.item_url("https://x", "../admin?a=1"), "https://x/items/..%2Fadmin%3Fa%3D1")

    def test_reads_the_item_with_the_api_key(self):
        self.assertEqual(app.get_item({"id": "42"}), {"id": "42", "name": "Wheel"})
        self.assertEqual(self.requests, [("GET", "https://api.example.com/items/42", "key-1")])

    def test_a_missing_item_is_not_found(self):
        with self.assertRaises(_Err) as raised:
            app.get_item({"id": "7"})
        self.assertEqual(raised.exception.value.code, "not_found")


if __name__ == "__main__":
    unittest.main()
