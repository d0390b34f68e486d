"""Config text that checkpoints carry, parsed as data and never executed.

PySlowFast's `save_checkpoint` stores `cfg.dump()`, a YAML string (older files hold the yacs CfgNode itself, which
safe_pickle turns into a plain dict). mmengine (mmaction2) stores the config as Python source in `meta["cfg"]`.
`parse_yaml` reads the block/flow YAML subset that PyYAML's `safe_dump` writes (mappings, sequences, compact
nested sequences, quoted and plain scalars, flow collections); `parse_python_config` walks the syntax tree of
`name = value` assignments and accepts only literals and `dict(key=literal, ...)` calls. Neither runs any code.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from slowfast_trt.common.errors import SlowFastError

# ----- YAML (the subset yacs/PyYAML dumps) -----

_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*)\Z")
# YAML 1.1 floats, as PyYAML resolves them: a dot is required and an exponent has a sign ("1e-7" is a string).
_FLOAT = re.compile(r"([-+]?[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)([eE][-+][0-9]+)?\Z")


def _scalar(text: str) -> Any:
    s = text.strip()
    if s.startswith(("[", "{")):
        value, rest = _flow(s, 0)
        if s[rest:].strip():
            raise SlowFastError(f"unreadable YAML flow value {s[:60]!r}")
        return value
    if s.startswith("'") and s.endswith("'") and len(s) >= 2:
        return s[1:-1].replace("''", "'")
    if s.startswith('"') and s.endswith('"') and len(s) >= 2:
        return json.loads(s)
    low = s.lower()
    if low in ("", "~", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    if low in (".inf", "+.inf", "-.inf"):
        return float(low.replace(".", ""))
    if low == ".nan":
        return float("nan")
    if _INT.match(s):
        return int(s.replace("_", ""))
    if _FLOAT.match(s):
        return float(s.replace("_", ""))
    return s


def _flow(s: str, i: int) -> tuple[Any, int]:
    """A flow collection or scalar starting at s[i]; returns (value, index after it)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i < len(s) and s[i] in "[{":
        close = "]" if s[i] == "[" else "}"
        items: Any = [] if close == "]" else {}  # a list for "[", a dict for "{"
        i += 1
        while True:
            while i < len(s) and s[i] in " ,":
                i += 1
            if i >= len(s):
                raise SlowFastError(f"unterminated YAML flow collection {s[:60]!r}")
            if s[i] == close:
                return items, i + 1
            if close == "]":
                value, i = _flow(s, i)
                items.append(value)
            else:
                key, i = _flow(s, i)
                if i >= len(s) or s[i] != ":":
                    raise SlowFastError(f"YAML flow mapping without ':' in {s[:60]!r}")
                items[key], i = _flow(s, i + 1)
    if i < len(s) and s[i] in "'\"":
        quote, j = s[i], i + 1
        while j < len(s) and not (s[j] == quote and not (quote == "'" and s[j + 1 : j + 2] == "'")):
            j += 2 if (quote == "'" and s[j : j + 2] == "''") or (quote == '"' and s[j] == "\\") else 1
        return _scalar(s[i : j + 1]), j + 1
    j = i
    while j < len(s) and s[j] not in ",]}:" or (s[j] == ":" and s[j + 1 : j + 2] not in (" ", "")):
        j += 1
    return _scalar(s[i:j]), j


def _split_key(content: str) -> tuple[str, str] | None:
    """`key: value` -> (key, value); None when the line is not a mapping entry."""
    if content.startswith(("'", '"')):
        value, end = _flow(content, 0)
        rest = content[end:]
        return (str(value), rest[1:].strip()) if rest.startswith(":") else None
    m = re.match(r"([^\s:][^:]*?):(\s+|\Z)(.*)\Z", content)
    return (m.group(1), m.group(3)) if m else None


def parse_yaml(text: str) -> Any:
    """The value of a YAML document in the block style PyYAML's safe_dump writes (see the module docstring)."""
    lines: list[list[Any]] = []  # [indent, stripped text] per meaningful line
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise SlowFastError("YAML indented with tabs")
        lines.append([len(raw) - len(raw.lstrip(" ")), stripped])
    if not lines:
        return None
    value, end = _block(lines, 0, lines[0][0])
    if end != len(lines):
        raise SlowFastError(f"unreadable YAML near {lines[end][1][:60]!r}")
    return value


def _open_brackets(text: str) -> int:
    """Unclosed [ and { in flow text (outside quotes)."""
    depth, quote = 0, None
    for c in text:
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
    return depth


def _continued(lines: list, i: int, indent: int, first: str) -> tuple[str, int]:
    """A plain or quoted scalar that PyYAML folded over more-indented lines."""
    parts = [first]
    if first.startswith(("[", "{")):  # a flow collection continues until its brackets close
        while i < len(lines) and lines[i][0] > indent and _open_brackets(" ".join(parts)) > 0:
            parts.append(lines[i][1])
            i += 1
        return " ".join(parts), i
    while i < len(lines) and lines[i][0] > indent and not lines[i][1].startswith("- ") and _split_key(lines[i][1]) is None:
        parts.append(lines[i][1])
        i += 1
    return " ".join(parts), i


def _block(lines: list, i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1] == "-" or lines[i][1].startswith("- "):
        out: list = []
        while i < len(lines) and lines[i][0] == indent and (lines[i][1] == "-" or lines[i][1].startswith("- ")):
            rest = lines[i][1][1:].strip()
            if not rest:
                if i + 1 < len(lines) and lines[i + 1][0] > indent:
                    value, i = _block(lines, i + 1, lines[i + 1][0])
                else:
                    value, i = None, i + 1
            elif rest.startswith("- ") or rest == "-" or (_split_key(rest) is not None and not rest.startswith(("[", "{"))):
                lines[i] = [indent + 2, rest]  # "- - x" / "- key: v": the item is a block at the next indent
                value, i = _block(lines, i, indent + 2)
            else:
                text, i = _continued(lines, i + 1, indent, rest)
                value = _scalar(text)
            out.append(value)
        return out, i
    mapping: dict = {}
    while i < len(lines) and lines[i][0] == indent:
        entry = _split_key(lines[i][1])
        if entry is None:
            raise SlowFastError(f"unreadable YAML line {lines[i][1][:60]!r}")
        key, rest = entry
        i += 1
        if rest:
            text, i = _continued(lines, i, indent, rest)
            mapping[key] = _scalar(text)
        elif i < len(lines) and (lines[i][0] > indent or (lines[i][0] == indent and lines[i][1].startswith("- "))):
            mapping[key], i = _block(lines, i, lines[i][0])
        else:
            mapping[key] = None
    return mapping, i


# ----- Python config text (mmengine's pretty_text) -----


class _NotLiteral(Exception):
    pass


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_literal(e) for e in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotLiteral
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _NotLiteral
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(kw.arg is None for kw in node.keywords):
            raise _NotLiteral
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    raise _NotLiteral


def parse_python_config(text: str) -> dict[str, Any]:
    """`{name: value}` of the top-level `name = literal` assignments of mmengine config text.

    Values may nest constants, lists, tuples, dicts and `dict(k=v)` calls; an assignment of anything else
    (a call, a name, an expression) is skipped. The text is parsed, never executed.
    """
    try:
        tree = ast.parse(text, mode="exec")
    except SyntaxError as e:
        raise SlowFastError(f"config text is not Python syntax (line {e.lineno}: {e.msg})") from None
    out: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                out[stmt.targets[0].id] = _literal(stmt.value)
            except (_NotLiteral, RecursionError):
                continue
    return out
