"""Medians of ab.sh's rounds: `python ab_summary.py AB_DIR` -> ab.json and ab.md in AB_DIR."""
import csv, json, statistics, sys
from pathlib import Path

ab = Path(sys.argv[1])
rows: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
for side in rows:
    for run in sorted(ab.glob(f"{side}-*")):
        if not run.is_dir():
            continue
        metrics = list(csv.DictReader(open(run / "train" / "metrics.csv")))
        rows[side].setdefault("train_clips_per_s", []).append(float(metrics[-1]["train_clips_per_s"]))
        result = json.loads((run / "pipeline" / "result.json").read_text())
        for name, r in result["rows"].items():
            rows[side].setdefault(f"{name}_clips_per_s", []).append(float(r["clips_per_s"]))
out = {side: {k: {"runs": v, "median": statistics.median(v)} for k, v in m.items()} for side, m in rows.items()}
(ab / "ab.json").write_text(json.dumps(out, indent=2) + "\n")
lines = ["| measure | before (median) | after (median) | after / before | runs before | runs after |", "|---|---:|---:|---:|---|---|"]
for k in out["before"]:
    b, a = out["before"][k], out["after"][k]
    lines.append(
        f"| {k} | {b['median']:.2f} | {a['median']:.2f} | {a['median'] / b['median']:.3f} | "
        f"{', '.join(f'{x:.2f}' for x in b['runs'])} | {', '.join(f'{x:.2f}' for x in a['runs'])} |"
    )
(ab / "ab.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
