#!/usr/bin/env bash
# Sets up .venv, then runs the test suite (GPU tests skip with a reason where there is no GPU).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest -q "$@"
