"""Functions (and methods) longer than N lines under a folder: `python longfuncs.py DIR [N]`."""
import ast, sys
from pathlib import Path
root, n = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 60
rows = []
for f in sorted(root.rglob("*.py")):
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > n:
                rows.append((length, f"{f.relative_to(root.parent)}:{node.lineno} {node.name}"))
for length, where in sorted(rows, reverse=True):
    print(f"{length:4d} {where}")
print(f"total {len(rows)} functions over {n} lines ({sum(1 for l, _ in rows if l > 100)} over 100)")
