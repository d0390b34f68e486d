"""`slowfast doctor`: what runs where on this machine, with one line naming the fix for every part that is missing.

It reads the machine the way the commands will: torch with its CUDA, cuDNN and TF32 settings, each GPU with its
driver and compute capability, NVDEC's limits as the loaders get them (`dali_pipelines.nvdec`), the DALI build
against the driver's CUDA version, PyAV's decoders and encoders, ONNX Runtime's providers, whether TensorRT builds
for this GPU (`engines.trt_targets`) and whether the bundled Triton server starts (`serving.env`); with a manifest,
how many files each decoder path takes or refuses (`dali_pipelines.decoder_paths`). It sits in `benchmarks`
because it reads every layer below. Nothing is installed or created; the only subprocesses are `nvidia-smi` and
`tritonserver --help`, each bounded by a timeout.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from slowfast_trt.common.environment import environment
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write_text
from slowfast_trt.common.nvidia import NvidiaFacts, read_nvidia
from slowfast_trt.dali_pipelines import nvdec
from slowfast_trt.dali_pipelines.decoder_paths import breakdown, breakdown_lines
from slowfast_trt.data.video_io import CODECS
from slowfast_trt.engines.trt_targets import NEWEST_KNOWN, builds_for, parse_version, probe_build
from slowfast_trt.serving.env import STAMP, TritonEnv, current_env, venv_path

SCHEMA = "slowfast-doctor/1"
STATUSES = ("ok", "missing", "unavailable", "warning")  # every status but "ok" comes with a fix
HELP_TIMEOUT_S = 20

# Software decoders PyAV can use for the codecs that matter (FFmpeg's native "av1" decoder works only through a
# hardware accelerator, so AV1 needs libdav1d or libaom-av1); the encoders are video_io.CODECS' (data synth/prepare).
PYAV_DECODERS = {"vp9": ("vp9", "libvpx-vp9"), "h264": ("h264",), "hevc": ("hevc",), "av1": ("libdav1d", "libaom-av1")}
NVDEC_CODECS = ("h264", "hevc", "vp9", "av1", "vp8", "mpeg4", "mjpeg")


@dataclass
class Check:
    """One part of the machine: its status, a one-line summary and, for every status but ok, the fix."""

    part: str
    status: str
    summary: str
    fix: str | None = None
    facts: dict = field(default_factory=dict)
    details: list[str] = field(default_factory=list)  # indented lines under the part's line (per GPU, per codec)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.status != "ok" and not self.fix:
            raise ValueError(f"{self.part}: a {self.status} part needs a fix")

    @property
    def line(self) -> str:
        """The part's one line: what is there, or what is missing and the fix."""
        return f"{self.part}: {self.summary}" + (f"; fix: {self.fix}" if self.fix else "")


def _one_line(e: BaseException | str, limit: int = 240) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:limit]


def _tf32() -> dict:
    """Both TF32 switches: the old allow_tf32 flags and, where torch has it, the fp32_precision API (torch >= 2.9)."""
    out: dict[str, object] = {}
    with warnings.catch_warnings():  # torch >= 2.9 warns that the old flags are deprecated
        warnings.simplefilter("ignore")
        for name, read in (
            ("cuda.matmul.allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
            ("cudnn.allow_tf32", lambda: torch.backends.cudnn.allow_tf32),
        ):
            try:
                out[name] = bool(read())
            except RuntimeError as e:  # after the new API was used, the old getters may refuse
                out[name] = f"unreadable: {_one_line(e)}"
    for name, obj in (
        ("cuda.matmul.fp32_precision", torch.backends.cuda.matmul),
        ("cudnn.conv.fp32_precision", getattr(torch.backends.cudnn, "conv", None)),
    ):
        if obj is not None and hasattr(obj, "fp32_precision"):
            out[name] = obj.fp32_precision
    out["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return out


def check_python() -> Check:
    facts = {"version": platform.python_version(), "executable": sys.executable, "platform": platform.platform()}
    return Check("Python", "ok", f"{facts['version']} ({facts['executable']}), {facts['platform']}", facts=facts)


def check_torch(nv: NvidiaFacts) -> Check:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    tf32 = _tf32()
    facts = {"version": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn, "tf32": tf32}
    summary = f"{torch.__version__}, CUDA build {torch.version.cuda or 'none (CPU build)'}, cuDNN {cudnn or 'none'}; TF32: "
    summary += ", ".join(f"{k}={v}" for k, v in tf32.items())
    if torch.version.cuda is None and nv.driver_version:
        return Check(
            "torch",
            "warning",
            f"{summary}; NVIDIA driver {nv.driver_version} is here but a CPU build of torch cannot use it",
            fix="pip install --force-reinstall torch (PyPI's Linux wheels are CUDA builds)",
            facts=facts,
        )
    return Check("torch", "ok", summary, facts=facts)


def check_gpus(nv: NvidiaFacts) -> Check:
    facts = {"gpus": nv.gpus, "driver": nv.driver_version, "driver_cuda": nv.driver_cuda_text, "nvidia_smi": nv.smi}
    if nv.gpus:
        details = [f"GPU {g['index']}: {g['name']}, compute capability {g['compute_capability']}, {g['memory_gib']} GiB" for g in nv.gpus]
        summary = f"{len(nv.gpus)} visible to torch, driver {nv.driver_version or 'unknown'} (CUDA {nv.driver_cuda_text or 'unknown'})"
        return Check("GPU", "ok", summary, facts=facts, details=details)
    if nv.driver_version and torch.version.cuda:
        return Check(
            "GPU",
            "unavailable",
            f"driver {nv.driver_version} (CUDA {nv.driver_cuda_text or '?'}) is here, but torch's CUDA {torch.version.cuda} sees no GPU",
            fix=f"install an NVIDIA driver for CUDA {torch.version.cuda} or newer (or a torch built for the driver's CUDA)",
            facts=facts,
        )
    cpu_build = " (torch is a CPU build)" if torch.version.cuda is None else ""
    return Check(
        "GPU",
        "unavailable",
        f"none visible to torch{cpu_build}; {nv.smi}",
        fix="run on a machine with an NVIDIA GPU and its driver (the CPU paths run here)",
        facts=facts,
    )


def _limits_text(lim: nvdec.Limits | None) -> str:
    if lim is None:
        return "not decoded"
    depths = "/".join(map(str, lim.bit_depths))
    return f"{lim.min_width}x{lim.min_height} to {lim.max_width}x{lim.max_height}, chroma {'/'.join(lim.chroma)}, {depths}-bit"


def check_nvdec(nv: NvidiaFacts, ask_driver: Callable = nvdec.driver_caps) -> Check:
    """NVDEC's limits per codec for 4:2:0 8-bit streams, as the loaders get them: the driver's answer, else the table."""
    codecs, details, answered = {}, [], 0
    for codec in NVDEC_CODECS:
        answer = ask_driver(codec, "420", 8) if nv.gpus else None
        answered += answer is not None
        lim = nvdec.limits_for(codec, "420", 8, ask_driver=lambda *_, a=answer: a)
        source = "driver" if answer is not None else "table"
        codecs[codec] = {"source": source, "limits": asdict(lim) if lim else None}
        details.append(f"{codec}: {_limits_text(lim)} ({source})")
    facts = {"codecs": codecs, "table_source": nvdec.TABLE_SOURCE}
    if not nv.gpus:
        return Check(
            "NVDEC",
            "unavailable",
            "no GPU, so the driver cannot be asked; a GPU whose driver does not answer gets the table below",
            fix="run on a machine with an NVIDIA GPU (its driver's libnvcuvid.so.1 answers cuvidGetDecoderCaps)",
            facts=facts,
            details=details,
        )
    if not answered:
        return Check(
            "NVDEC",
            "warning",
            "the driver did not answer cuvidGetDecoderCaps (is libnvcuvid.so.1 installed?); routing uses the table below",
            fix="install the driver's video decode library (libnvcuvid.so.1, e.g. the libnvidia-decode package)",
            facts=facts,
            details=details,
        )
    return Check("NVDEC", "ok", f"limits from the driver for {answered} of {len(NVDEC_CODECS)} codecs", facts=facts, details=details)


def dali_distribution() -> str | None:
    """The installed DALI distribution's name ('nvidia-dali-cuda120'), or None."""
    names = sorted({n for d in importlib.metadata.distributions() if (n := d.metadata["Name"] or "").startswith("nvidia-dali")})
    return names[0] if names else None


def check_dali(nv: NvidiaFacts) -> Check:
    try:
        import nvidia.dali as dali  # lazy: nvidia-dali, optional (extra [data]) and heavy
        from nvidia.dali.backend import GetCUDADeviceCount  # lazy: nvidia-dali, as above
    except ImportError as e:
        return Check(
            "DALI", "missing", f"not installed ({_one_line(e)})", fix="pip install nvidia-dali-cuda120 (or pip install -e .[data])"
        )
    dist = dali_distribution() or "nvidia-dali"
    digits = "".join(ch for ch in dist.rpartition("cuda")[2] if ch.isdigit())
    build = int(digits[:-1]) if len(digits) >= 2 else None  # nvidia-dali-cuda120 -> CUDA 12
    devices = GetCUDADeviceCount()
    facts = {
        "version": dali.__version__,
        "distribution": dist,
        "cuda_build": build,
        "cuda_devices": devices,
        "driver_cuda": nv.driver_cuda_text,
    }
    summary = f"{dali.__version__} ({dist}, a CUDA {build or '?'} build), {devices} CUDA device(s)"
    if nv.driver_cuda is None:
        return Check("DALI", "ok", f"{summary}; no NVIDIA driver, so CPU pipelines only", facts=facts)
    if build is not None and nv.driver_cuda[0] < build:
        return Check(
            "DALI",
            "warning",
            f"{summary}; the driver supports CUDA {nv.driver_cuda_text}, older than the build's CUDA {build}",
            fix=f"update the NVIDIA driver to one for CUDA {build}.x, or install DALI's build for CUDA {nv.driver_cuda[0]}",
            facts=facts,
        )
    return Check("DALI", "ok", f"{summary}; the driver supports CUDA {nv.driver_cuda_text}, which runs it", facts=facts)


def check_pyav() -> Check:
    try:
        import av  # lazy: PyAV, optional (extra [data])
    except ImportError as e:
        return Check("PyAV", "missing", f"not installed ({_one_line(e)})", fix="pip install av (or pip install -e .[data])")

    def have(name: str, mode: str) -> bool:
        try:
            av.codec.Codec(name, mode)
        except Exception:  # PyAV's UnknownCodecError, whose module moved between PyAV versions
            return False
        return True

    decode = {codec: [n for n in names if have(n, "r")] for codec, names in PYAV_DECODERS.items()}
    encode = {e: have(e, "w") for e in sorted({spec.encoder for spec in CODECS.values()})}
    ffmpeg = getattr(av, "ffmpeg_version_info", None)
    libraries = {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}
    facts = {"version": av.__version__, "ffmpeg": ffmpeg, "libraries": libraries, "decoders": decode, "encoders": encode}
    summary = (
        f"{av.__version__} (FFmpeg {ffmpeg or '?'}); decode "
        + ", ".join(f"{c} ({'/'.join(n) or 'no decoder'})" for c, n in decode.items())
        + "; encode "
        + ", ".join(f"{e} {'yes' if ok else 'no'}" for e, ok in encode.items())
    )
    lacking = [c for c, n in decode.items() if not n] + [e for e, ok in encode.items() if not ok]
    if lacking:
        fix = f"install a PyAV wheel whose FFmpeg has {', '.join(lacking)} (pip install --force-reinstall av)"
        return Check("PyAV", "warning", summary, fix=fix, facts=facts)
    return Check("PyAV", "ok", summary, facts=facts)


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort  # lazy: onnxruntime, optional (extra [export])
    except ImportError as e:
        return Check(
            "ONNX Runtime", "missing", f"not installed ({_one_line(e)})", fix="pip install onnxruntime (or pip install -e .[export])"
        )
    providers = ort.get_available_providers()
    facts = {"version": ort.__version__, "providers": providers}
    return Check("ONNX Runtime", "ok", f"{ort.__version__}, providers {', '.join(providers)}", facts=facts)


def check_tensorrt(nv: NvidiaFacts) -> Check:
    ccs = nv.compute_capabilities
    if importlib.util.find_spec("tensorrt") is None:
        if ccs:
            where = "; by the support ranges " + "; ".join(builds_for(NEWEST_KNOWN, cc)[1] for cc in ccs)
        else:
            where = ", and no GPU here, so no TensorRT plan can be built on this machine"
        return Check("TensorRT", "missing", f"not installed{where}", fix="pip install -e .[tensorrt] on a GPU machine")
    try:
        import tensorrt as trt  # lazy: tensorrt, optional (GPU machines only) and heavy
    except Exception as e:  # an installed wheel whose libraries do not load
        return Check(
            "TensorRT", "warning", f"installed but does not import ({_one_line(e)})", fix="pip install --force-reinstall -e .[tensorrt]"
        )
    facts: dict = {"version": trt.__version__}
    if not ccs:
        return Check(
            "TensorRT",
            "unavailable",
            f"{trt.__version__} installed, but there is no GPU, so it cannot build here",
            fix="build plans on the GPU they will run on",
            facts=facts,
        )
    verdicts = [builds_for(parse_version(trt.__version__), cc) for cc in ccs]
    facts["support"] = [
        {"compute_capability": g["compute_capability"], "builds": ok, "why": why} for g, (ok, why) in zip(nv.gpus, verdicts)
    ]
    refused = [why for ok, why in verdicts if ok is False]
    if refused:
        fix = "pip install a TensorRT release that supports this GPU (NVIDIA's TensorRT support matrix)"
        return Check("TensorRT", "warning", f"{trt.__version__}: {refused[0]}", fix=fix, facts=facts)
    t = time.perf_counter()
    failure = probe_build(trt)
    facts["probe_build"] = {"ok": failure is None, "seconds": round(time.perf_counter() - t, 2), "error": failure}
    if failure:
        return Check(
            "TensorRT",
            "warning",
            f"{trt.__version__}: a one-layer build failed on this GPU ({failure})",
            fix="check the CUDA libraries TensorRT loads (`pip install --force-reinstall -e .[tensorrt]`) and the driver",
            facts=facts,
        )
    summary = f"{trt.__version__}: {verdicts[0][1]}; a one-layer build took {facts['probe_build']['seconds']} s"
    return Check("TensorRT", "ok", summary, facts=facts)


def find_triton_env() -> tuple[TritonEnv | None, str]:
    """The Triton environment `slowfast serve` would use, found without creating anything: (env, where) or (None, why not)."""
    here = current_env()
    if here is not None and not os.environ.get("SLOWFAST_TRITON_VENV"):
        return here, f"this interpreter ({sys.prefix}) has numpy<2 and Triton's packages"
    venv = venv_path()
    if not (venv / "bin" / "python").exists():
        return None, f"no Triton venv at {venv}"
    try:
        info = json.loads((venv / STAMP).read_text(encoding="utf-8"))
        return TritonEnv(venv, info["libdir"], info["purelib"], info["version"]), f"the Triton venv {venv}"
    except (OSError, ValueError, KeyError):
        return None, f"{venv} was never finished (no readable {STAMP})"


def _help_runs(server: Path, env: dict) -> tuple[bool, str]:
    """Whether `tritonserver --help` prints its usage within HELP_TIMEOUT_S, and its first line (or why not)."""
    try:
        r = subprocess.run([str(server), "--help"], capture_output=True, text=True, timeout=HELP_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return False, f"no answer within {HELP_TIMEOUT_S} s"
    except OSError as e:
        return False, e.strerror or str(e)
    out = (r.stdout or "") + (r.stderr or "")
    return "--model-repository" in out or "Usage" in out, _one_line(out or f"exit {r.returncode}, no output")


def check_triton() -> Check:
    env, where = find_triton_env()
    creatable = importlib.util.find_spec("venv") is not None and importlib.util.find_spec("ensurepip") is not None
    facts: dict = {"where": where, "venv": str(venv_path()), "creatable": creatable}
    if env is None:
        fix = "run `slowfast serve REPO` once with the package index reachable, or set SLOWFAST_TRITON_VENV to a ready venv"
        if not creatable:
            return Check(
                "Triton",
                "missing",
                f"{where}, and this Python lacks venv/ensurepip to create one",
                fix="install python3-venv, then " + fix,
                facts=facts,
            )
        how = "the first `slowfast serve` (or `bench serve`, or the demo's serving stage) creates it: a few minutes, about 1 GB"
        return Check("Triton", "missing", f"{where}; {how}", fix=fix, facts=facts)
    rebuild = f"delete {env.venv} and run `slowfast serve REPO` to rebuild it"
    server = env.tritonserver
    stub = env.site / "pytriton" / "tritonserver" / "python_backend_stubs" / env.version / "triton_python_backend_stub"
    facts |= {"tritonserver": str(server), "python_backend_stub": stub.exists()}
    if not server.exists():
        return Check("Triton", "warning", f"{where} has no tritonserver at {server}", fix=rebuild, facts=facts)
    starts, first = _help_runs(server, env.server_env())
    facts["help"] = first
    if not starts:
        return Check("Triton", "warning", f"{server} --help does not run ({first})", fix=rebuild, facts=facts)
    if not stub.exists():
        return Check(
            "Triton",
            "warning",
            f"tritonserver runs, but PyTriton has no Python-backend stub for Python {env.version}",
            fix="use Python 3.8-3.13",
            facts=facts,
        )
    note = "the bundled server has the Python backend only; TensorRT, ONNX and DALI models need NVIDIA's Triton container"
    return Check("Triton", "ok", f"{where}: tritonserver --help runs; {note}", facts=facts)


def run_doctor(manifest: str | os.PathLike | None = None) -> dict:
    """Every check and, with a manifest, the decoder breakdown: the record `slowfast doctor --json` prints."""
    if manifest is not None and not Path(manifest).is_file():
        raise SlowFastError(f"manifest not found: {manifest}; pass a manifest CSV (`slowfast data synth` and `data prepare` write one)")
    nv = read_nvidia()
    checks = [
        check_python(),
        check_torch(nv),
        check_gpus(nv),
        check_nvdec(nv),
        check_dali(nv),
        check_pyav(),
        check_onnxruntime(),
        check_tensorrt(nv),
        check_triton(),
    ]
    record = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
        "checks": [asdict(c) | {"line": c.line} for c in checks],
        "missing": [c.line for c in checks if c.status != "ok"],
        "manifest": None,
    }
    if manifest is not None:
        if any(c.part == "PyAV" and c.status == "missing" for c in checks):
            record["manifest"] = {"manifest": str(manifest), "error": "the breakdown probes each file with PyAV; pip install av"}
        else:
            b = breakdown(manifest)
            record["manifest"] = b | {
                "limits_from": "the driver's where it answers, else the SDK table" if nv.gpus else "the SDK table, no GPU here"
            }
    return record


def to_text(record: dict) -> str:
    """The record as the terminal report: one line per part (a fix on the same line), details indented under it."""
    lines = [f"slowfast doctor: what runs where on {record['environment']['device']} ({record['created']})"]
    for c in record["checks"]:
        lines += [c["line"], *(f"  {d}" for d in c["details"])]
    b = record["manifest"]
    if b is not None:
        lines += [f"manifest {b['manifest']}: {b['error']}"] if "error" in b else breakdown_lines(b, b["limits_from"])
    n = len(record["missing"])
    lines.append(f"{n} part(s) need attention; each one's fix is on its line" if n else "every part is in place")
    return "\n".join(lines) + "\n"


def write_record(record: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write OUT/doctor.json and OUT/doctor.txt, each atomically; returns both paths."""
    out = Path(out_dir)
    js, txt = out / "doctor.json", out / "doctor.txt"
    atomic_write_text(js, json.dumps(record, indent=2, default=str) + "\n")
    atomic_write_text(txt, to_text(record))
    return js, txt
