#!/usr/bin/env bash
# The main job: sets up .venv, then runs the end-to-end demo (for now the GFLOPs table against the paper).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
exec "$root/.venv/bin/slowfast" flops "$@"
