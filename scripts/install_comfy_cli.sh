#!/usr/bin/env bash
# Install comfy-cli, the Comfy Registry's own command line, for tests/test_registry.py.
#   bash scripts/install_comfy_cli.sh
# It goes into its own venv, .cache/comfy-cli (ignored), never into the project's: it brings about 25
# packages the project does not need (uv, an ffmpeg binary, two telemetry clients, cookiecutter, GitPython)
# and ~340 MB. The tests only run its offline commands: `comfy node validate` and its pyproject parser.
# Idempotent. Environment: PYTHON (default python3), COMFY_CLI_VERSION (default 1.23.0).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.cache/comfy-cli
VERSION=${COMFY_CLI_VERSION:-1.23.0}
if [ ! -x "$DIR/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$DIR"
fi
if ! "$DIR/bin/python" -m pip show comfy-cli 2>/dev/null | grep -qx "Version: $VERSION"; then
  "$DIR/bin/python" -m pip install -q --disable-pip-version-check "comfy-cli==$VERSION" 2> >(grep -v "is ignored" >&2)
fi
echo "$DIR/bin/comfy"
