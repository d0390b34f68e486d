#!/usr/bin/env bash
# The GPU proof: the project's GPU tests (and, on request, its GPU benchmarks) as ONE command of at most 540 s on
# one GPU machine that has torch+CUDA, onnxruntime (CPU), pytest + pytest-xdist + pytest-timeout, no TensorRT and
# no package registry (the reference: one H200, torch 2.11+cu130), plus the DALI and PyAV wheels carried as parts.
#
# Pack on a machine with the project's .venv: `bash ../shared/gpu/pack.sh` writes .gpu/p1..pN (wheel parts),
# .gpu/data and its own .gpu/run.sh; replace that with this file: `cp scripts/gpu/run.sh .gpu/run.sh`.
# On the GPU machine, from the project root: `bash .gpu/run.sh [STEP ...]` (or `bash scripts/gpu/run.sh ...`).
# The wheel parts may arrive over several calls: each call first stashes the parts it finds in $T/parts, and
# installs once all are there (a call with missing parts stops after stashing them, saying which it has).
#
# Steps (default: doctor tests), each with its budget in seconds beside it in BUDGET (also the step's kill timeout);
# setup and pack always run, a data set is synthesized only when a selected step reads it (NEEDS). A selection whose
# budgets add up to more than 540 s is refused (SLOWFAST_GPU_BUDGET=N sets another cap).
# SLOWFAST_GPU_DRY_RUN=1 prints the plan (steps, budgets, data sets, files) and runs nothing.
#
# $OUT (default ./gpu-out) receives at most 5 files, written as the run goes (a kill keeps what is there):
#   log.txt      this script's output;
#   pytest.txt   pytest -v, one line per test as it finishes, then the summary (-ra) and --durations;
#   junit.xml    written when pytest ends;
#   doctor.json  `slowfast doctor --json`;
#   results.tgz  r/: every step's result.json/.md, metrics.csv, the GPU tests' kept results (refreshed after each step).
# Work files stay in $T/gpu-out ($T: SLOWFAST_GPU_TMP, default /tmp). Afterwards unpack results.tgz into benchmarks/results/<gpu-name>/ and commit it with log.txt.
set -uo pipefail

declare -A BUDGET=(
  [setup]=80          # always: the DALI/PyAV wheels from the parts into $T/site (once per machine)
  [doctor]=20         # versions, NVDEC caps per codec, TF32 switches, `slowfast doctor --json`
  [tests]=400         # pytest -m gpu over tests/ (in test_gpu_paths.py the quick checks come first, the heavy ones last)
  [model]=300         # bench model R50 fp32/fp16/bf16, batch 8 and 32, plain and tuned
  [conv]=120          # conv3d ceiling fp16/fp32/bf16 at batch 64
  [pipeline]=150      # bench pipeline: 256x340 H.264 (every loader, PyAV on every core), the demo's 64x80 VP9
  [train]=300         # train R50 --amp auto, batch 32, 60 steps in one epoch of 1920 clips
  [e2e]=120           # bench e2e: DALI GPU -> torch fp16
  [compile]=300       # bench model --compile fp16, batch 8 and 64
  [soak]=150          # bench soak: DALI GPU train and test pipelines, 20 epochs of the 64 H.264 videos (RSS, fds, clips/s)
  [demo]=420          # slowfast demo --quick with CUDA present
  [synth-h264-256]=40 # 64 H.264 videos at 256x340, 96 frames (Kinetics' short side)
  [synth-small-vp9]=15 # 8 VP9 videos at 64x80 (`data synth`'s default; DALI's CPU decoder in a GPU graph)
  [synth-r50]=15      # a random-weight slowfast_r50_4x16 checkpoint
  [pack]=10           # always: results.tgz
)
ORDER=(doctor tests model conv pipeline train e2e compile soak demo)
DEFAULT_STEPS=(doctor tests)
declare -A NEEDS=(  # data set -> the steps that read it
  [h264-256]="pipeline train e2e soak"
  [small-vp9]="pipeline"
  [r50]="model e2e compile"
)
DATASETS=(h264-256 small-vp9 r50)
LIMIT=${SLOWFAST_GPU_BUDGET:-540}
OUT=${OUT:-$PWD/gpu-out}
T=${SLOWFAST_GPU_TMP:-/tmp}  # scratch: parts/, w/ and site/ (the wheels), gpu-out/ (work), gpu-data/
R=$T/gpu-out           # work folder: r/ is what results.tgz holds
D=$T/gpu-data          # synthesized data
N=$(nproc 2>/dev/null || echo 4)

selected=("$@")
[ ${#selected[@]} -gt 0 ] || selected=("${DEFAULT_STEPS[@]}")
for s in "${selected[@]}"; do
  [[ " ${ORDER[*]} " == *" $s "* ]] || { echo "error: unknown step '$s'; steps: ${ORDER[*]}" >&2; exit 2; }
done
want() { [[ " ${selected[*]} " == *" $1 "* ]]; }
steps=(); for s in "${ORDER[@]}"; do want "$s" && steps+=("$s"); done
synth=(); for d in "${DATASETS[@]}"; do for s in ${NEEDS[$d]}; do if want "$s"; then synth+=("$d"); break; fi; done; done
files=(log.txt); want tests && files+=(pytest.txt junit.xml); want doctor && files+=(doctor.json); files+=(results.tgz)
total=$((BUDGET[setup] + BUDGET[pack]))
for s in "${steps[@]}"; do total=$((total + BUDGET[$s])); done
for d in "${synth[@]}"; do total=$((total + BUDGET[synth-$d])); done

plan() {
  echo "plan steps: ${steps[*]}"
  echo "plan budget setup ${BUDGET[setup]}"
  for d in "${synth[@]}"; do echo "plan budget synth-$d ${BUDGET[synth-$d]}"; done
  for s in "${steps[@]}"; do echo "plan budget $s ${BUDGET[$s]}"; done
  echo "plan budget pack ${BUDGET[pack]}"
  echo "plan synth: ${synth[*]:-none}"
  echo "plan files: ${files[*]}"
  echo "plan total: $total of $LIMIT s"
}
if [ "$total" -gt "$LIMIT" ]; then
  plan >&2
  echo "error: these steps' budgets add up to $total s, over one command's $LIMIT s; run them in separate calls (or set SLOWFAST_GPU_BUDGET)" >&2
  exit 2
fi
if [ "${SLOWFAST_GPU_DRY_RUN:-0}" = 1 ]; then plan; exit 0; fi

mkdir -p "$OUT" "$R/r" "$D"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
plan

pack() { tar czf "$R/results.tgz" -C "$R" r && cp "$R/results.tgz" "$OUT/results.tgz"; }

run() {  # NAME COMMAND...: one budgeted part of the run (its budget is its kill timeout); logs the time it took
  local name=$1 t=$SECONDS rc; shift
  echo "=== [${SECONDS}s] $name (budget ${BUDGET[$name]} s)"
  timeout "${BUDGET[$name]}" "$@"; rc=$?
  [ $rc -eq 124 ] && echo "=== $name: killed at its budget"
  echo "=== [${SECONDS}s] $name: exit $rc after $((SECONDS - t)) s"
  return $rc
}

setup() {  # the wheels as the parts carry them (pack.sh), installed without dependencies: the machine's torch stays
  mkdir -p "$T/parts"; cp .gpu/p*/part* "$T/parts/" 2>/dev/null
  if [ ! -d "$T/site/nvidia/dali" ]; then
    cat "$T"/parts/part* > "$T/wheels.tar" 2>/dev/null && rm -rf "$T/w" && mkdir -p "$T/w" && tar xf "$T/wheels.tar" -C "$T/w" \
      || { echo "wheel parts missing or incomplete (have: $(ls "$T/parts" 2>/dev/null | tr '\n' ' ')); carry the others and run again"; return 1; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$T/site" "$T"/w/wheels/*.whl "$T"/w/wheels/deps/*.whl || return 1
    rm -rf "$T/w" "$T/wheels.tar"
  fi
  python3 -c "import nvidia.dali, av, slowfast_trt" || { echo "DALI, PyAV or the project does not import"; return 1; }
}
# The project runs from this tree (nothing to install): `slowfast` is `python3 -m slowfast_trt`.
export PYTHONPATH=$T/site:$PWD
slowfast() { python3 -m slowfast_trt "$@"; }

synth_h264_256() { [ -f "$D/h264-256/manifest.csv" ] || slowfast data synth "$D/h264-256" --videos 64 --codec h264 --size 256x340 --frames 96 --workers "$N" >/dev/null; }
synth_small_vp9() { [ -f "$D/small-vp9/manifest.csv" ] || slowfast data synth "$D/small-vp9" --videos 8 >/dev/null; }
synth_r50() {
  [ -f "$D/r50.safetensors" ] || python3 -c "from slowfast_trt import model; model.save(model.build('slowfast_r50_4x16', num_classes=400), '$D/r50.safetensors')"
}

step_doctor() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader
  echo "libnvcuvid in ldconfig: $(ldconfig -p 2>/dev/null | grep -c nvcuvid)"
  python3 - <<'PY'
import torch, nvidia.dali as dali, av
from slowfast_trt.dali_pipelines import nvdec
from slowfast_trt.engines import gpu_policy
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "dali", dali.__version__, "av", av.__version__)
print("gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None, "capability", nvdec.gpu_capability())
for c in ("h264", "hevc", "vp9", "av1"):
    lim = nvdec.table_limits(c, nvdec.gpu_capability())
    print("nvdec", c, "driver:", nvdec.driver_caps(c, "420", 8), "table:", lim and (lim.min_width, lim.min_height, lim.max_width, lim.max_height))
print("fp32_precision API:", hasattr(torch.backends.cudnn, "conv"), "conv tf32:", gpu_policy.conv_tf32())
PY
  if slowfast doctor --help >/dev/null 2>&1; then
    slowfast doctor --json > "$OUT/doctor.json"; slowfast doctor | head -80
  else
    echo "doctor: this checkout has no \`slowfast doctor\`; doctor.json not written"
  fi
}

step_tests() {  # per-test lines reach pytest.txt as each test ends (-v, unbuffered); -ra lists FAILED/ERROR/SKIPPED
  local per_test=(); python3 -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout=200)
  python3 -m pytest -v -p no:cacheprovider -m gpu -ra --durations=25 "${per_test[@]}" --junitxml="$OUT/junit.xml" \
    tests/ > "$OUT/pytest.txt" 2>&1
}

step_model() { slowfast bench model "$D/r50.safetensors" --batch-size 8,32 --precision fp32 --precision fp16 --precision bf16 --device cuda --out "$R/r/model" 2>&1 | tail -30; }
step_conv() {
  for p in fp16 fp32 bf16; do
    python3 scripts/conv3d_ceiling.py --preset slowfast_r50_4x16 --size 256 --batch-size 64 --precision $p --out "$R/r/conv3d-$p" 2>&1 | tail -4
  done
}
step_pipeline() {
  slowfast bench pipeline "$D/h264-256/manifest.csv" --device cuda --batch-size 16 --threads "$N" --clips 256 --out "$R/r/pipe-h264-256" 2>&1 | tail -20
  slowfast bench pipeline "$D/small-vp9/manifest.csv" --device cuda --batch-size 8 --threads 4 --clips 32 --out "$R/r/pipe-small-vp9" 2>&1 | tail -10
}
step_train() {  # one epoch of 1920 clips: the 64 videos listed 30 times through folder links (a manifest drops repeated paths)
  local m="$D/h264-256-x30"
  if [ ! -f "$m/train.csv" ]; then
    mkdir -p "$m"; cp "$D/h264-256/classes.txt" "$m/"
    head -1 "$D/h264-256/manifest.csv" > "$m/train.csv"
    for i in $(seq -w 0 29); do
      ln -sfn "$D/h264-256" "$m/r$i"; tail -n +2 "$D/h264-256/manifest.csv" | sed "s|^|r$i/|" >> "$m/train.csv"
    done
  fi
  rm -rf "$T/run"
  slowfast train --preset slowfast_r50_4x16 --train "$m/train.csv" --out "$T/run" --epochs 1 --batch-size 32 --amp auto --max-steps 60 --threads "$N" --quiet 2>&1 | tail -8
  mkdir -p "$R/r/train"; cp "$T/run/metrics.csv" "$T/run/config.json" "$R/r/train/" 2>/dev/null; cat "$T/run/metrics.csv" 2>/dev/null
}
step_e2e() {
  slowfast bench e2e "$D/h264-256/manifest.csv" "$D/r50.safetensors" --precision fp16 --device cuda --batch-size 16 --clips 256 --threads "$N" --out "$R/r/e2e" 2>&1 | tail -16
}
step_compile() { slowfast bench model "$D/r50.safetensors" --batch-size 8,64 --precision fp16 --compile --device cuda --out "$R/r/model-compile" 2>&1 | tail -12; }
step_soak() { slowfast bench soak "$D/h264-256/manifest.csv" --device cuda --epochs 20 --batch-size 16 --threads "$N" --out "$R/r/soak" 2>&1 | tail -30; }
step_demo() {
  rm -rf "$T/demo"
  slowfast demo --quick --quiet --out "$T/demo" 2>&1 | tail -40
  mkdir -p "$R/r/demo"; cp -r "$T/demo/benchmarks" "$R/r/demo/" 2>/dev/null; cp "$T/demo/report.md" "$R/r/demo/" 2>/dev/null
}
export -f slowfast setup synth_h264_256 synth_small_vp9 synth_r50 step_doctor step_tests step_model step_conv step_pipeline step_train step_e2e step_compile step_soak step_demo
export OUT T R D N

run setup bash -c "set -o pipefail; setup" || { pack; exit 1; }
for d in "${synth[@]}"; do run "synth-$d" bash -c "set -o pipefail; synth_${d//-/_}" || echo "=== synth-$d failed: the steps that read it fail too"; done
status=0
for s in "${steps[@]}"; do
  run "$s" bash -c "set -o pipefail; step_$s" || status=1
  if [ "$s" = tests ]; then
    tail -60 "$OUT/pytest.txt"
    cp -r benchmarks/results/gpu-tests benchmarks/results/e2e-gpu "$R/r/" 2>/dev/null  # what the GPU tests keep
  fi
  pack
done
echo "=== [${SECONDS}s] done (exit $status)"
exit $status
