#!/usr/bin/env bash
# Creates or refreshes the project's virtual environment (.venv) and installs the project in one pip call, with the
# exact versions the test suite last passed with (constraints.txt). SLOWFAST_DEPS=latest installs the newest versions
# that setup.py's ranges allow instead.
# Without an NVIDIA GPU, torch is the CPU build: PyTorch's CPU index is probed once (SLOWFAST_TORCH_INDEX overrides
# it) and used only if it answers, so an unreachable index costs one failed request, not five retries per package.
# With a GPU (`nvidia-smi -L` works), torch is the CUDA build and the [tensorrt] extra is added, for torch's CUDA major.
# Idempotent: a stamp keyed on setup.py, constraints.txt, this script and those choices skips an unchanged install.
# SLOWFAST_ENV_DRY_RUN=1 prints the commands instead of running them and changes nothing. pip keeps no cache: the
# wheels (about 1 GB with DALI's) would take that much disk again, and the stamp already skips an unchanged install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
venv="${SLOWFAST_VENV:-$root/.venv}"
deps="${SLOWFAST_DEPS:-locked}"
dry="${SLOWFAST_ENV_DRY_RUN:-}"
cpu_index="${SLOWFAST_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
extras="data,export,test,peers"  # peers: decord, so the frame-identity tests of `bench pipeline`'s peers run in CI

case "$deps" in
  locked) pins=(-c "$root/constraints.txt") ;;
  latest) pins=() ;;
  *) echo "error: SLOWFAST_DEPS must be 'locked' (the default: constraints.txt) or 'latest', got '$deps'" >&2; exit 2 ;;
esac
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; else gpu=0; fi

run() {  # a command, or with SLOWFAST_ENV_DRY_RUN its line on stdout
  if [ -n "$dry" ]; then echo "+ $*"; else "$@"; fi
}

if [ ! -x "$venv/bin/python" ]; then
  echo "[env] creating $venv" >&2
  run "$py" -m venv "$venv"
fi
stamp="$venv/.slowfast-stamp"
want="$(cat setup.py constraints.txt scripts/env.sh | sha256sum | cut -d' ' -f1) deps=$deps gpu=$gpu"
if [ -z "$dry" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir ${pins[@]+"${pins[@]}"})

if [ "$gpu" = 1 ]; then
  echo "[env] GPU found: torch with CUDA, then TensorRT for torch's CUDA major" >&2
  echo "[env] installing slowfast-trt and its dependencies ($deps versions)" >&2
  run "${pip[@]}" -e ".[$extras]"
  cuda_major="$("$venv/bin/python" -c 'import torch; print((torch.version.cuda or "cpu").split(".")[0])' 2>/dev/null || echo unknown)"
  case "$cuda_major" in
    12) trt=tensorrt-cu12 ;;  # NVIDIA's `tensorrt` metapackage installs the CUDA 13 libraries
    cpu) echo "[env] warning: $venv holds a CPU build of torch; remove $venv and run this again for the CUDA build" >&2; trt=tensorrt ;;
    *) trt=tensorrt ;;
  esac
  run "${pip[@]}" -e ".[$extras,$trt]"
else
  probe='import os, ssl, sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=10, context=ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)).close()'
  if "$py" -c "$probe" "$cpu_index/torch/" >/dev/null 2>&1; then
    echo "[env] no GPU: the CPU build of torch from $cpu_index" >&2
    torch=(--extra-index-url "$cpu_index")
  else
    # Unreachable: pip's own sources (a local CPU wheel in its find-links, else the default index), with torch held
    # at the tested version in both modes, the one such a local wheel is for.
    echo "[env] no GPU, and $cpu_index does not answer: $(grep -E '^torch==' constraints.txt) from pip's configured sources" \
      "(without a local CPU wheel there, that is the CUDA build, several GB)" >&2
    torch=("$(grep -E '^torch==' constraints.txt)")
  fi
  echo "[env] installing slowfast-trt and its dependencies ($deps versions)" >&2
  run "${pip[@]}" "${torch[@]}" -e ".[$extras]"
fi
if [ -z "$dry" ]; then
  echo "$want" > "$stamp"
fi
