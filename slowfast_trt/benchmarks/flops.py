"""The GFLOPs/params table against the paper (Tables 2-5): rows as dicts, Markdown, and result files."""

from __future__ import annotations

from pathlib import Path

from slowfast_trt.benchmarks.results import write_result
from slowfast_trt.common.environment import environment
from slowfast_trt.model.flops import count
from slowfast_trt.model.zoo import get_preset, presets

UNIT = "GFLOPs = multiply-adds x 1e9 (convs, linear, non-local matmuls), batch 1, one {size}x{size} view"


def _input_text(shapes: dict[str, list[int]]) -> str:
    return ", ".join(f"{p} {s[2]}x{s[3]}^2" + (f" ({s[1]}ch)" if s[1] != 3 else "") for p, s in shapes.items())


def flops_row(name: str, size: int = 256) -> dict:
    """One table row: our params/GFLOPs for preset `name` at `size`, the paper's number, the difference and any note."""
    preset = get_preset(name)
    c = count(name, size=size)
    paper = preset.paper_gflops if size == 256 else None  # the paper counts at 256x256 only
    diff = None if paper is None else 100.0 * (c["gflops"] / paper - 1.0)
    ops = c["ops_gflops"]
    facts = {
        "gflops": f"{c['gflops']:.2f}",
        "params_m": f"{c['params'] / 1e6:.2f}",
        "matmul": f"{ops.get('matmul', 0.0):.1f}",
        "conv": f"{ops.get('conv', 0.0) + ops.get('linear', 0.0):.1f}",
    }
    note = preset.note.format(**facts) if preset.note else None
    if preset.paper_gflops is not None and size != 256:
        note = (note + "; " if note else "") + f"the paper's {preset.paper_gflops} is at 256x256, not compared at {size}"
    return {
        "preset": name,
        "source": preset.source,
        "size": size,
        "input": c["input"],
        "params": c["params"],
        "gflops": round(c["gflops"], 4),
        "paper_gflops": paper,
        "diff_pct": None if diff is None else round(diff, 2),
        "tolerance_pct": preset.tolerance_pct,
        "within_tolerance": None if diff is None else abs(diff) <= preset.tolerance_pct,
        "paper_params_m": preset.paper_params_m,
        "fast_share": round(c["fast_share"], 4),
        "parts_gflops": {k: round(v["gflops"], 4) for k, v in c["parts"].items()},
        "note": note,
    }


def flops_table(names: list[str] | None = None, size: int = 256) -> list[dict]:
    """Rows for `names` (all presets when empty)."""
    return [flops_row(n, size) for n in (names or presets())]


def to_markdown(rows: list[dict]) -> str:
    """A Markdown table of the rows, notes as numbered footnotes."""
    size = rows[0]["size"] if rows else 256
    lines = [
        f"{UNIT.format(size=size)}.",
        "",
        "| preset | source | input | params | GFLOPs | paper | diff | Fast share | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    notes: dict[str, int] = {}  # identical notes share one footnote
    for r in rows:
        ref = ""
        if r["note"]:
            ref = f"[{notes.setdefault(r['note'], len(notes) + 1)}]"
        paper = "-" if r["paper_gflops"] is None else f"{r['paper_gflops']:g}"
        diff = "-" if r["diff_pct"] is None else f"{r['diff_pct']:+.2f}%"
        lines.append(
            f"| {r['preset']} | {r['source']} | {_input_text(r['input'])} | {r['params'] / 1e6:.2f}M | "
            f"{r['gflops']:.2f} | {paper} | {diff} | {100 * r['fast_share']:.0f}% | {ref} |"
        )
    if notes:
        lines += [""] + [f"[{i}] {n}" for n, i in notes.items()]
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict], out_dir: str | Path) -> dict[str, Path]:
    """Write `result.json` (environment, settings, rows) and `flops.md` into `out_dir`."""
    result = {"benchmark": "flops", **environment(), "settings": {"size": rows[0]["size"] if rows else None, "unit": UNIT}, "rows": rows}
    return write_result(result, out_dir, to_markdown(rows), "flops.md")
