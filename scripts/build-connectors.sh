#!/usr/bin/env bash
# Builds the connectors written in Python (plugins/python, with componentize-py) and JavaScript
# (plugins/js, with componentize-js) into <target>/polyglot/, where the tests and the guide
# find them. Installs the pinned tools when missing: componentize-py (plugins/python/
# requirements.txt) into a venv under $DIBOP_TOOLS_DIR (default ~/.cache/dibop-tools), and the
# npm packages of plugins/js/package-lock.json with `npm ci` (and Python 3 / Node.js from Debian
# when the machine lacks them). Rebuilds only when an input changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${CARGO_TARGET_DIR:-$root/target}/polyglot"
tools="${DIBOP_TOOLS_DIR:-$HOME/.cache/dibop-tools}"
mkdir -p "$out" "$tools"

inputs="$(find wit sdk/python plugins/python plugins/js/vpic plugins/js/build.mjs plugins/js/package-lock.json \
  -type f -not -name '*.pyc' | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
if [ -f "$out/vpic_py.wasm" ] && [ -f "$out/vpic_js.wasm" ] && [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs" ]; then
  echo "== connectors in Python and JavaScript: up to date ($out)"
  exit 0
fi

# The tools run on the machine's Python 3 and Node.js; install them from Debian when missing.
missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== Python connector (componentize-py)"
wanted="$(sed -n 's/^componentize-py==//p' plugins/python/requirements.txt)"
if ! "$tools/py/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py $wanted"; then
  python3 -m venv "$tools/py"
  "$tools/py/bin/pip" install --quiet --disable-pip-version-check -r plugins/python/requirements.txt
fi
"$tools/py/bin/componentize-py" -d wit -w dibop:plugin/connector@0.1.0 componentize \
  -p plugins/python/vpic_py -p sdk/python app -o "$out/vpic_py.wasm"

echo "== JavaScript connector (componentize-js)"
lock="$(sha256sum plugins/js/package-lock.json | cut -d' ' -f1)"
if [ "$(cat plugins/js/node_modules/.dibop-lock 2>/dev/null)" != "$lock" ]; then
  (cd plugins/js && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock" > plugins/js/node_modules/.dibop-lock
fi
node plugins/js/build.mjs "$out"

echo "$inputs" > "$out/.inputs"
