"""`slowfast report`: merge result.json files into one report.md with PNG plots.

Results are recognised by their "benchmark" key (flops, pipeline, model, e2e, accuracy). Each keeps its
own table (the benchmark's own Markdown), and the report adds plots: accuracy against GFLOPs x views (the
paper's Fig. 2 style), clips/s against batch per backend, and the per-stage time breakdown of e2e runs.
Ratios are only ever taken inside one result or between results measured on the same device.
"""

from __future__ import annotations

import importlib
import io
from pathlib import Path

from slowfast_trt.benchmarks.results import fmt, read_result
from slowfast_trt.benchmarks.serve import headline
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write_bytes, atomic_write_text

KINDS = ("flops", "pipeline", "model", "e2e", "accuracy", "serve")


def find_results(dirs: list[str | Path]) -> list[dict]:
    """Every result.json in `dirs` (a folder's own, else those below it, in path order)."""
    found: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p.is_file():
            found.append(p)
        elif (p / "result.json").is_file():
            found.append(p / "result.json")
        elif p.is_dir():
            found += sorted(p.rglob("result.json"))
        else:
            raise SlowFastError(f"{p}: no such folder; pass folders written by `slowfast bench ... --out DIR`")
    if not found:
        raise SlowFastError(f"no result.json under {', '.join(map(str, dirs))}; run a `slowfast bench ...` command with --out first")
    results = [read_result(p) for p in dict.fromkeys(found)]
    unknown = [r for r in results if r["benchmark"] not in KINDS]
    if unknown:
        raise SlowFastError(f"{unknown[0]['_path']}: unknown benchmark kind {unknown[0]['benchmark']!r}; expected one of {KINDS}")
    return results


def device_key(result: dict) -> tuple:
    """What must match for two results' numbers to be divided: the device description, CPU and GPU models."""
    return (result.get("device"), result.get("cpu"), result.get("gpu"))


def same_device(a: dict, b: dict) -> bool:
    return device_key(a) == device_key(b)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _figure():
    import matplotlib  # lazy: matplotlib, heavy; only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib, heavy; only for plots

    return plt


def plot_accuracy(result: dict) -> bytes:
    """Accuracy (top-1, or mAP) against GFLOPs x views, one line per artifact x engine across its view settings."""
    plt = _figure()
    metric = "top1" if any("top1" in r for r in result["rows"]) else "mAP"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series: dict[str, list[dict]] = {}
    for r in result["rows"]:
        series.setdefault(f"{Path(r['artifact']).name} ({r['engine']})", []).append(r)
    for name, rows in series.items():
        rows = sorted(rows, key=lambda r: r["gflops_x_views"])
        xs, ys = [r["gflops_x_views"] for r in rows], [r.get(metric) for r in rows]
        ax.plot(xs, ys, marker="o", label=name)
        for r in rows:
            ax.annotate(r["setting"], (r["gflops_x_views"], r.get(metric)), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # lazy: matplotlib, heavy; only for plots

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("GFLOPs x views (multiply-adds, log scale)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"Accuracy vs inference cost ({result['settings']['videos']} videos)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    data = _png(fig)
    plt.close(fig)
    return data


def plot_throughput(result: dict) -> bytes:
    """clips/s against batch size, one line per artifact x engine (one device per figure)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series: dict[str, list[dict]] = {}
    for r in result["rows"]:
        series.setdefault(f"{Path(r['artifact']).name} ({r['engine']})", []).append(r)
    for name, rows in series.items():
        rows = sorted(rows, key=lambda r: r["batch"])
        ax.plot([r["batch"] for r in rows], [r["clips_per_s"] for r in rows], marker="o", label=name)
    batches = sorted({r["batch"] for r in result["rows"]})
    rates = [r["clips_per_s"] for r in result["rows"] if r["clips_per_s"] > 0]
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    if rates and max(rates) / min(rates) > 20:  # backends orders of magnitude apart stay readable
        ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("clips/s" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_title(f"Throughput per backend on {result['device']}"[:90])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    data = _png(fig)
    plt.close(fig)
    return data


def plot_stages(result: dict) -> bytes:
    """Stacked bars of decode+sample, preprocess and inference time per clip for each pipeline of an e2e run."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    rows = result["rows"]
    names = [r["pipeline"] for r in rows]
    left = [0.0] * len(rows)
    for stage, colour in (("decode", "#4c72b0"), ("preprocess", "#dd8452"), ("inference", "#55a868")):
        vals = [r[f"{stage}_ms_per_clip"] or 0.0 for r in rows]
        ax.barh(names, vals, left=left, color=colour, label=stage)
        left = [a + b for a, b in zip(left, vals)]
    for i, r in enumerate(rows):
        ax.text(left[i], i, f"  {fmt(r['e2e_clips_per_s'])} clips/s e2e, bound: {r['bound']}", va="center", fontsize=8)
    ax.set_xlabel("ms per clip (isolated passes)")
    ax.set_xlim(0, max(left) * 1.8 if max(left) > 0 else 1)
    ax.set_title(f"Per-stage time, {result['settings']['engine']}")
    ax.legend(fontsize=7, loc="lower right")
    data = _png(fig)
    plt.close(fig)
    return data


def _module(kind: str):
    return importlib.import_module(
        {"model": "slowfast_trt.benchmarks.throughput", "serve": "slowfast_trt.benchmarks.serve"}.get(
            kind, f"slowfast_trt.benchmarks.{kind}"
        )
    )


def _table(result: dict) -> str:
    mod = _module(result["benchmark"])
    return mod.to_markdown(result["rows"]) if result["benchmark"] == "flops" else mod.to_markdown(result)


def headlines(results: list[dict]) -> list[str]:
    """The numbers people ask for first, each taken from inside one result (so from one run on one device)."""
    lines = []
    for r in results:
        kind, where = r["benchmark"], Path(r["_path"]).parent.name
        if kind == "accuracy":
            widest: dict[str, dict] = {}
            for row in r["rows"]:
                key = f"{Path(row['artifact']).name} ({row['engine']})"
                if key not in widest or row["views"] > widest[key]["views"]:
                    widest[key] = row
            metric = "top1" if any("top1" in x for x in widest.values()) else "mAP"
            parts = [
                f"{k} {fmt(v.get(metric), '.1f')}% at {v['setting']} ({v['gflops_x_views']:.2f} GFLOPs x views)" for k, v in widest.items()
            ]
            lines.append(f"- accuracy ({where}): " + "; ".join(parts))
            agree = [f"{k} {fmt(v['agreement_with_first'], '.1f')}%" for k, v in widest.items() if v["agreement_with_first"] is not None]
            if agree:
                lines.append(f"- top-1 agreement with {r['settings']['reference']} ({where}): " + "; ".join(agree))
        elif kind == "model":
            best: dict[str, dict] = {}
            for row in r["rows"]:
                key = f"{Path(row['artifact']).name} {row['engine']}"
                if key not in best or row["clips_per_s"] > best[key]["clips_per_s"]:
                    best[key] = row
            lines.append(
                f"- best clips/s per artifact and engine on {r['device']} ({where}): "
                + "; ".join(f"{k} {v['clips_per_s']:.1f} (batch {v['batch']})" for k, v in best.items())
            )
        elif kind == "pipeline":
            ratios = r["ratios"]
            vs = [
                f"{ratios[k]:.2f}x {label}"
                for k, label in (("dali_train_vs_pyav_serial", "PyAV serial"), ("dali_train_vs_pyav_dataloader", "PyAV DataLoader"))
                if k in ratios
            ]
            if vs:  # a run limited to some loaders (--loaders) may lack these
                lines.append(f"- DALI vs PyAV loading on {r['device']} ({where}): train pipeline {', '.join(vs)}")
        elif kind == "e2e":
            rows = {x["pipeline"]: x for x in r["rows"]}
            if "dali" in rows and "pyav" in rows:  # a run limited to one pipeline (--loaders) has no comparison
                lines.append(
                    f"- end to end on {r['device']} ({where}): DALI {fmt(rows['dali']['e2e_clips_per_s'])} clips/s "
                    f"(bound by {rows['dali']['bound']}), PyAV {fmt(rows['pyav']['e2e_clips_per_s'])} clips/s; "
                    f"ratio {r['ratios']['dali_vs_pyav_e2e']:.2f}x"
                )
        elif kind == "serve":
            lines.append(headline(r, where))
        elif kind == "flops":
            within = [x for x in r["rows"] if x["within_tolerance"] is not None]
            ok = sum(bool(x["within_tolerance"]) for x in within)
            lines.append(
                f"- GFLOPs against the paper ({where}): {ok} of {len(within)} presets within tolerance at {r['settings']['size']}px"
            )
    return lines


def compare_runs(results: list[dict]) -> list[str]:
    """Clips/s ratios between model runs, only for runs on the same device; other pairs are named, not divided."""
    runs = [r for r in results if r["benchmark"] == "model"]
    if len(runs) < 2:
        return []
    base = runs[0]
    lines = ["## Model runs compared", "", f"Reference run: {base['_path']} on {base['device']}.", ""]
    for other in runs[1:]:
        if not same_device(base, other):
            lines.append(f"- {other['_path']}: not compared, measured on another device ({other['device']})")
            continue
        ref = {(Path(x["artifact"]).name, x["engine"], x["batch"]): x["clips_per_s"] for x in base["rows"]}
        pairs = [(k, x["clips_per_s"] / ref[k]) for x in other["rows"] if (k := (Path(x["artifact"]).name, x["engine"], x["batch"])) in ref]
        lines.append(
            f"- {other['_path']} (same device): " + ("; ".join(f"{a} {e} b{b}: {v:.2f}x" for (a, e, b), v in pairs) or "no common rows")
        )
    return lines + [""]


def write_report(dirs: list[str | Path], out_dir: str | Path, notes: list[str] | None = None) -> Path:
    """Merge the results under `dirs` into `out_dir`/report.md with plots in `out_dir`/plots; returns the report path.

    `notes` (Markdown lines) go under "Notes" after the headlines: the demo records there which stages fell back to
    the CPU or were skipped, and why."""
    results = find_results(dirs)
    out = Path(out_dir)
    plots = out / "plots"
    results.sort(key=lambda r: (KINDS.index(r["benchmark"]), r["_path"]))
    machines: dict[str, int] = {}
    for r in results:  # the hardware; each result's own device line also names its backend / DALI placement
        name = f"GPU {r['gpu']} with CPU {r.get('cpu')}" if r.get("gpu") else f"CPU {r.get('cpu')}"
        machines[name] = machines.get(name, 0) + 1
    lines = [
        "# SlowFast-TRT benchmark report",
        "",
        f"{len(results)} result(s) measured on: " + "; ".join(f"{k} ({v} result(s))" for k, v in machines.items()) + ".",
        "Ratios are taken inside one result (one run) or between runs on the same device, never across devices.",
        "",
        "## Headlines",
        "",
        *headlines(results),
        "",
    ]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    lines += compare_runs(results)
    for i, r in enumerate(results):
        kind = r["benchmark"]
        rel = Path(r["_path"])
        lines += [
            f"## {kind}: {rel.parent.name}",
            "",
            f"Source: `{rel}`; device: {r.get('device')}; versions: "
            + ", ".join(f"{k} {v}" for k, v in (r.get("versions") or {}).items() if v),
            "",
            _table(r),
        ]
        plot = {"accuracy": plot_accuracy, "model": plot_throughput, "e2e": plot_stages}.get(kind)
        if plot and r.get("rows"):
            name = f"{i:02d}_{kind}_{rel.parent.name}.png"
            atomic_write_bytes(plots / name, plot(r))
            lines += [f"![{kind} {rel.parent.name}](plots/{name})", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
