#!/usr/bin/env bash
# The main job: sets up .venv, then runs the end-to-end demo (synthetic data -> training -> export -> benchmarks -> report).
# Extra arguments go to `slowfast demo` (e.g. --quick, --out DIR); a re-run resumes where the last one stopped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
exec "$root/.venv/bin/slowfast" demo "$@"
