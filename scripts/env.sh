#!/usr/bin/env bash
# Creates or refreshes the project's virtual environment (.venv) and installs the project.
# Idempotent: a stamp keyed on setup.py and this script skips the install when nothing changed.
# Without an NVIDIA GPU it installs the CPU build of torch first, so pip never pulls a multi-GB CUDA build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "[env] creating $venv" >&2
  "$py" -m venv "$venv"
fi
stamp="$venv/.slowfast-stamp"
want="$(cat setup.py scripts/env.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[env] GPU found: installing torch with CUDA" >&2
    "${pip[@]}" "torch>=2.1,<3"
  else
    echo "[env] no GPU: installing the CPU build of torch" >&2
    # A local CPU wheel (pip's find-links) first, then PyTorch's CPU index, then the package registry.
    "${pip[@]}" --no-index "torch==2.13.0" 2>/dev/null \
      || "${pip[@]}" "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
      || "${pip[@]}" "torch==2.13.0"
  fi
fi
echo "[env] installing slowfast-trt and its dependencies" >&2
"${pip[@]}" -e ".[data,export,test]"
echo "$want" > "$stamp"
