#!/usr/bin/env bash
# The project's GPU checks (issues "GPU correctness", "GPU data pipeline", "GPU compute"), for a GPU machine
# with torch+CUDA and no registry access. Derived from ../shared/gpu/run.sh: pack with ../shared/gpu/pack.sh,
# then replace .gpu/run.sh with this file (cp scripts/gpu/run.sh .gpu/run.sh) or run it directly.
# Usage: bash scripts/gpu/run.sh [STEP ...]
#   steps: tests demo model conv pipeline train e2e compile (default: all, in that order)
# Writes to $OUT (or ./gpu-out): log.txt and results.tgz (every result.json/.md, metrics.csv); copy the
# results into benchmarks/results/<gpu-name>/ and commit them with the log.
export PYTHONUNBUFFERED=1
R=${OUT:-$PWD/gpu-out}; mkdir -p "$R/r"; exec > >(tee "$R/log.txt") 2>&1
steps=${*:-tests demo model conv pipeline train e2e compile}
t0=$(date +%s); st(){ echo "=== [$(( $(date +%s)-t0 ))s] $*"; tar czf "$R/results.tgz" -C "$R" r log.txt 2>/dev/null; }
want(){ [[ " $steps " == *" $1 "* ]]; }
if ! python3 -c "import nvidia.dali" 2>/dev/null && [ ! -d /tmp/site/nvidia/dali ]; then
  mkdir -p /tmp/parts; cp .gpu/p*/part* /tmp/parts/ 2>/dev/null
  cat /tmp/parts/part* > /tmp/wheels.tar && mkdir -p /tmp/w && tar xf /tmp/wheels.tar -C /tmp/w || { echo "wheel parts missing or incomplete: $(ls /tmp/parts)"; exit 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/w/wheels/*.whl /tmp/w/wheels/deps/*.whl
fi
rm -rf /tmp/proj && python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/proj . || { echo "project install failed"; exit 1; }
export PYTHONPATH=/tmp/site:/tmp/proj:$PWD PATH=/tmp/proj/bin:$PATH
D=/tmp/gpu-data; mkdir -p "$D"; N=$(nproc)
st start; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import nvidia.dali as d, av, torch; print('dali', d.__version__, 'av', av.__version__, 'torch', torch.__version__, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())" || exit 1
python3 -c "from slowfast_trt import model; model.save(model.build('slowfast_r50_4x16', num_classes=400), '/tmp/r50.safetensors')" || exit 1
# Data: Kinetics-like H.264 at short side 256 (256x340), the 240x320 sets, and the demo's default (64x80 VP9).
[ -f "$D/h264-256/manifest.csv" ] || slowfast data synth "$D/h264-256" --videos 64 --codec h264 --size 256x340 --frames 96 >/dev/null
[ -f "$D/h264/manifest.csv" ] || slowfast data synth "$D/h264" --videos 64 --codec h264 --size 240x320 --frames 96 >/dev/null
[ -f "$D/vp9/manifest.csv" ] || slowfast data synth "$D/vp9" --videos 64 --codec vp9 --size 240x320 --frames 96 >/dev/null
[ -f "$D/small-vp9/manifest.csv" ] || slowfast data synth "$D/small-vp9" --videos 8 >/dev/null
if want tests; then st "tests: pytest -m gpu (TensorRT tests skip without TensorRT)"; timeout 900 python3 -m pytest -q -p no:cacheprovider -m gpu -rs tests/ 2>&1 | tail -40; cp -r benchmarks/results/gpu-tests "$R/r/" 2>/dev/null; fi
if want demo; then st "demo: slowfast demo (full) with CUDA present"; timeout 3600 slowfast demo --out /tmp/demo 2>&1 | tail -40; cp -r /tmp/demo/benchmarks "$R/r/demo" 2>/dev/null; cp /tmp/demo/report.md "$R/r/demo-report.md" 2>/dev/null; fi
if want model; then st "model: torch fp32/fp16/bf16, plain and tuned, peak memory"; timeout 900 slowfast bench model /tmp/r50.safetensors --batch-size 1,8,32,64 --precision fp32 --precision fp16 --precision bf16 --device cuda --out "$R/r/model" 2>&1 | tail -40; fi
if want conv; then
  for p in fp16 fp32 bf16; do st "conv: conv3d ceiling $p batch 64"; timeout 300 python3 scripts/conv3d_ceiling.py --preset slowfast_r50_4x16 --size 256 --batch-size 64 --precision $p --out "$R/r/conv3d-$p" 2>/dev/null | head -4; done
fi
if want pipeline; then
  for s in h264-256 h264 vp9; do st "pipeline: $s, every loader, PyAV DataLoader with $N workers"; /usr/bin/time -f "wall %e s" timeout 120 slowfast bench pipeline "$D/$s/manifest.csv" --device cuda --batch-size 16 --threads "$N" --clips 256 --out "$R/r/pipe-$s" 2>&1 | tail -20; done
  st "pipeline: VP9 64x80 (the demo's data: routed to DALI's CPU decoder)"; timeout 60 slowfast bench pipeline "$D/small-vp9/manifest.csv" --device cuda --batch-size 8 --threads 4 --clips 32 --out "$R/r/pipe-small" 2>&1 | tail -10
fi
if want train; then
  st "train: --amp auto (measured), R50 4x16, 224 crops, 60 steps on 256x340 H.264"; timeout 600 slowfast train --preset slowfast_r50_4x16 --train "$D/h264-256/manifest.csv" --out /tmp/run --epochs 20 --batch-size 32 --amp auto --max-steps 60 --threads "$N" --quiet 2>&1 | tail -8
  cp /tmp/run/metrics.csv /tmp/run/config.json "$R/r/" 2>/dev/null; cat /tmp/run/metrics.csv 2>/dev/null
fi
if want e2e; then st "e2e: DALI GPU -> torch fp16, bounded"; /usr/bin/time -f "wall %e s" timeout 120 slowfast bench e2e "$D/h264-256/manifest.csv" /tmp/r50.safetensors --precision fp16 --device cuda --batch-size 16 --clips 256 --threads "$N" --out "$R/r/e2e" 2>&1 | tail -16; fi
if want compile; then st "compile: torch.compile fp16 (compile time apart)"; timeout 600 slowfast bench model /tmp/r50.safetensors --batch-size 8,64 --precision fp16 --compile --device cuda --out "$R/r/model-compile" 2>&1 | tail -12; fi
st done
