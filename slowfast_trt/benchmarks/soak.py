"""`slowfast bench soak`: a loader run for many epochs, with resident memory, open files and clips/s per epoch.

Host memory that grows epoch after epoch ends a long training run out of memory (reported for DALI video
readers, NVIDIA/DALI#4675, and for decord), and leaked file descriptors end it at the process's limit. Each
loader is built once and run for `epochs` epochs, as training runs it (`set_epoch` between them); after each
epoch the process tree's resident memory (this process and its DataLoader workers), this process's open file
descriptors and the epoch's clips/s are recorded. The verdict compares epochs from the third on, once caches
and buffer pools have reached their size: memory may grow < 5% after epoch 2, descriptors not at all, and
clips/s from epoch 3 on stays within the noise (each epoch within 25% of their median; a loaded machine's runs
show in the load average).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

from slowfast_trt.benchmarks.results import write_result
from slowfast_trt.common.device import apply_threads
from slowfast_trt.common.environment import environment
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.malloc import pinned_threshold
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.peer_loaders import missing, peer_dataset
from slowfast_trt.dali_pipelines.plan import multiview_plan, train_plan
from slowfast_trt.dali_pipelines.pyav_loader import PyAVClips
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import Video
from slowfast_trt.model.config import SlowFastConfig

LOADERS = ("dali_train", "dali_test", "pyav_dataloader", "decord_dataloader")
SETTLED_EPOCH = 2  # epochs before this one warm caches and pools; growth is measured from its end
RSS_GROWTH_MAX = 0.05
RATE_SPREAD_MAX = 0.25


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:  # the process ended, or no /proc
        pass
    return out


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def tree_rss_bytes(pid: int | None = None) -> int:
    """Resident memory of process `pid` (default: this one) and all its descendants, in bytes."""
    todo, total = [os.getpid() if pid is None else pid], 0
    while todo:
        p = todo.pop()
        total += _rss_bytes(p)
        todo += _children(p)
    return total


def open_fds() -> int:
    """File descriptors this process holds open."""
    return len(os.listdir("/proc/self/fd"))


def verdict(epochs: list[dict]) -> dict:
    """The three checks on per-epoch rows (rss_mb, fds, clips_per_s; epochs numbered from 1).

    Memory and descriptors are compared with their values at the end of epoch SETTLED_EPOCH; clips/s over the
    epochs after it (the first epochs also pay for building pipelines, reading files and filling pools)."""
    if len(epochs) < SETTLED_EPOCH + 2:
        raise SlowFastError(f"a soak needs at least {SETTLED_EPOCH + 2} epochs to judge growth and drift, got {len(epochs)}")
    settled = epochs[SETTLED_EPOCH - 1 :]
    base = settled[0]["rss_mb"]
    growth = (max(e["rss_mb"] for e in settled) - base) / base if base else 0.0
    fds = [e["fds"] for e in settled]
    rates = [e["clips_per_s"] for e in epochs[SETTLED_EPOCH:]]
    med = statistics.median(rates)
    spread = max(abs(r - med) for r in rates) / med if med else float("inf")
    return {
        "rss_growth_after_epoch_2": growth,
        "rss_ok": growth < RSS_GROWTH_MAX,
        "fds_range": [min(fds), max(fds)],
        "fds_ok": max(fds) == min(fds),
        "clips_per_s_median": med,
        "clips_per_s_max_deviation": spread,
        "clips_per_s_ok": spread <= RATE_SPREAD_MAX,
    }


def _loader(name: str, videos: list[Video], cfg: SlowFastConfig, feed: FeedSpec, seed: int):
    """(loader, views per clip, set_epoch or None) for soak row `name`; the test pipeline takes 3 crops per clip."""
    if name == "dali_train":
        loader = ClipLoader(lambda e: train_plan(videos, cfg, e, seed), cfg, "train", feed, videos=videos)
        return loader, 1, loader.set_epoch
    if name == "dali_test":
        loader = ClipLoader(multiview_plan(videos, cfg, num_clips=1), cfg, "test", feed.but(num_crops=3), videos=videos)
        return loader, loader.views_per_sample, None
    plans = train_plan(videos, cfg, 0, seed)  # the DataLoader rows replay one epoch's plans
    if name == "decord_dataloader":
        why = missing(name)
        if why:
            raise SlowFastError(f"cannot soak {name}: {why}")
        data = peer_dataset(name, plans, cfg)
    else:
        data = PyAVClips(plans, cfg, "train")
    return torch.utils.data.DataLoader(data, batch_size=feed.batch_size, num_workers=feed.dali_threads, persistent_workers=True), 1, None


def soak(
    videos: list[Video],
    cfg: SlowFastConfig,
    feed: FeedSpec,
    *,
    loaders: tuple[str, ...] = ("dali_train", "dali_test"),
    epochs: int = 20,
    seed: int = 0,
    progress=print,
) -> dict:
    """Run each of `loaders` for `epochs` epochs over `videos` with `feed`'s device, batch and CPU budget (no model
    beside the loader); per-epoch memory, descriptors and clips/s, and a verdict."""
    if not videos:
        raise SlowFastError("the manifest has no videos")
    unknown = sorted(set(loaders) - set(LOADERS))
    if unknown or not loaders:
        raise SlowFastError(f"--loaders: unknown loader(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(LOADERS)}")
    feed = feed.but(model_on_cpu=False)
    split = apply_threads(feed.split)
    rows = {}
    for name in loaders:
        loader, views, set_epoch = _loader(name, videos, cfg, feed, seed)
        per_epoch = []
        for epoch in range(epochs):
            if set_epoch:
                set_epoch(epoch)
            n, start = 0, time.perf_counter()
            for b in loader:
                n += b["label"].shape[0]
            elapsed = time.perf_counter() - start
            row = {
                "epoch": epoch + 1,
                "clips_per_s": n / views / elapsed if elapsed > 0 else 0.0,
                "rss_mb": tree_rss_bytes() / 2**20,
                "fds": open_fds(),
                "seconds": elapsed,
            }
            per_epoch.append(row)
            progress(f"{name:18s} epoch {epoch + 1:3d}: {row['clips_per_s']:7.2f} clips/s  rss {row['rss_mb']:8.1f} MB  fds {row['fds']}")
        del loader  # a persistent DataLoader's workers stop here
        rows[name] = {"epochs": per_epoch, "verdict": verdict(per_epoch)}
    env = environment()
    return {
        "benchmark": "soak",
        **env,
        "loadavg": list(os.getloadavg()),
        "settings": {
            "preset": cfg.name,
            "batch": feed.batch_size,
            "epochs": epochs,
            "videos": len(videos),
            "sizes": sorted({f"{v.width}x{v.height}" for v in videos}),
            "device": feed.device,
            "thread_split": split.as_dict(),
            "malloc_mmap_threshold": pinned_threshold(),  # CPU loaders hold glibc's threshold fixed (common.malloc)
            "loaders": list(loaders),
        },
        "rows": rows,
    }


def to_markdown(result: dict) -> str:
    """Per-loader verdict, then the per-epoch table."""
    s = result["settings"]
    lines = [
        f"Soak on {result['device']}: preset {s['preset']}, batch {s['batch']}, {s['epochs']} epochs of {s['videos']} videos "
        f"({', '.join(s['sizes'])}), {s['thread_split']['dali']} loader threads; load average at the end "
        f"{', '.join(f'{x:.2f}' for x in result['loadavg'])}.",
        "",
        "| loader | RSS growth after epoch 2 | fds (from epoch 2) | clips/s median | max deviation | verdict |",
        "|---|---:|---|---:|---:|---|",
    ]
    for name, r in result["rows"].items():
        v = r["verdict"]
        ok = v["rss_ok"] and v["fds_ok"] and v["clips_per_s_ok"]
        failed = [k.removesuffix("_ok") for k in ("rss_ok", "fds_ok", "clips_per_s_ok") if not v[k]]
        lines.append(
            f"| {name} | {100 * v['rss_growth_after_epoch_2']:.1f}% | {v['fds_range'][0]}..{v['fds_range'][1]} | "
            f"{v['clips_per_s_median']:.2f} | {100 * v['clips_per_s_max_deviation']:.0f}% | {'flat' if ok else 'NOT flat: ' + ', '.join(failed)} |"
        )
    for name, r in result["rows"].items():
        lines += ["", f"{name}:", "", "| epoch | clips/s | RSS MB | fds |", "|---:|---:|---:|---:|"]
        lines += [f"| {e['epoch']} | {e['clips_per_s']:.2f} | {e['rss_mb']:.1f} | {e['fds']} |" for e in r["epochs"]]
    return "\n".join(lines) + "\n"


def write_results(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write `result.json` and `soak.md` into `out_dir`."""
    return write_result(result, out_dir, to_markdown(result), "soak.md")
