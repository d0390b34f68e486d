"""Every command in README.md, docs/ and the result READMEs exists as written; the runnable ones run.

Convention (docs/design.md, "Commands in the documentation"): in fenced `bash`/`sh`/`shell`/`console` blocks
each `slowfast ...` line must name existing subcommands and options (checked against the click objects, so a
renamed option fails here), choice values must be valid, and `bash scripts/...` / `python scripts/...` must
exist. Blocks tagged `bash run` are executed in order, per file, in one temporary folder. In `python` blocks
every import line must import.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from slowfast_trt.cli.main import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
RUN_BUDGET_S = 600  # all `bash run` blocks of one file together: a hang guard, not a speed test (about a minute on 2 idle cores)


def _doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmarks").rglob("README.md"))]
    return [f for f in files if f.exists()]


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    flags: tuple[str, ...]
    text: str

    def where(self, offset: int = 0) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line + 1 + offset}"


_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([^`]*)$")


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with their info string split into language and flags."""
    out, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(2), m.group(3).split()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        out.append(Block(path, i + 1, info[0].lower() if info else "", tuple(info[1:]), "\n".join(lines[i + 1 : j])))
        i = j + 1
    return out


def _all_blocks(langs: set[str]) -> list[Block]:
    return [b for f in _doc_files() for b in blocks(f) if b.lang in langs]


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(offset of the first physical line, line) with backslash continuations joined."""
    out, buf, start = [], "", 0
    for k, raw in enumerate(text.splitlines()):
        if not buf:
            start = k
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        out.append((start, buf + raw))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def _segments(line: str) -> list[list[str]]:
    """The simple commands of one shell line, as token lists (comments dropped; split at && || ; and spaced |)."""
    out = []
    for part in re.split(r"&&|\|\||;|\s\|\s", line):
        try:
            tokens = shlex.split(part, comments=True)
        except ValueError:  # an unbalanced quote in a fragment: not a command we can check
            continue
        while tokens and (tokens[0] in {"do", "then", "else", "time", "exec"} or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0])):
            tokens = tokens[1:]
        if tokens:
            out.append(tokens)
    return out


def _slowfast_args(tokens: list[str]) -> list[str] | None:
    """The arguments after the `slowfast` command in a token list, or None when it is another program."""
    if Path(tokens[0]).name == "slowfast":
        return tokens[1:]
    for i in range(len(tokens) - 1):
        if tokens[i] == "-m" and tokens[i + 1] in {"slowfast_trt", "slowfast_trt.cli.main"}:
            return tokens[i + 2 :]
    return None


def _option_names(cmd: click.Command) -> set[str]:
    names = {"-h", "--help"}
    for p in cmd.params:
        if isinstance(p, click.Option):
            names.update(p.opts)
            names.update(p.secondary_opts)
    return names


def _choices(cmd: click.Command, name: str) -> list[str] | None:
    for p in cmd.params:
        if isinstance(p, click.Option) and name in p.opts and isinstance(p.type, click.Choice):
            return [str(c) for c in p.type.choices]
    return None


def _option_spellings(token: str) -> list[str]:
    """Option names written in one token: `--x`, `--x=1`, `[--x`, `--[no-]x`, `--a|--b`."""
    token = token.strip("[]()")
    out = []
    for alt in token.split("|"):
        alt = alt.strip("[]()").split("=")[0]
        if not alt.startswith("-"):
            continue
        if "[no-]" in alt:
            out += [alt.replace("[no-]", ""), alt.replace("[no-]", "no-")]
        else:
            out.append(alt)
    return out


def _takes_value(cmd: click.Command, name: str) -> bool:
    return any(isinstance(p, click.Option) and name in p.opts and not p.is_flag and not p.count for p in cmd.params)


def check_command(args: list[str]) -> list[str]:
    """Problems with one `slowfast` invocation: unknown subcommands, unknown options, invalid choice values."""
    problems, cmd, path = [], cli_main, ["slowfast"]
    i = 0
    while i < len(args):
        tok = args[i]
        bare = tok.strip("[]()")
        if bare.startswith("-") and bare not in {"-", "--"}:
            for name in _option_spellings(tok):
                if name not in _option_names(cmd):
                    problems.append(f"`{' '.join(path)}` has no option {name}")
                    continue
                choices = _choices(cmd, name)
                value = args[i + 1].strip("[]()") if i + 1 < len(args) and "=" not in tok else None
                if choices and value and re.fullmatch(r"[a-z0-9][a-z0-9_.+|-]*", value):
                    bad = [v for v in value.split("|") if v not in choices]
                    if bad:
                        problems.append(f"`{' '.join(path)} {name}` does not accept {bad} (choices: {choices})")
                if isinstance(cmd, click.Group) and value is not None and _takes_value(cmd, name):
                    i += 1  # a group with options (`eval`): the value is not a subcommand
        elif isinstance(cmd, click.Group):
            sub = cmd.commands.get(bare)
            if sub is None:
                problems.append(f"`{' '.join(path)}` has no subcommand {bare!r} (has: {sorted(cmd.commands)})")
                return problems
            cmd, path = sub, [*path, bare]
        i += 1
    if isinstance(cmd, click.Group) and not cmd.invoke_without_command:
        problems.append(f"`{' '.join(path)}` needs a subcommand")
    return problems


def check_block(block: Block) -> list[str]:
    problems = []
    for offset, line in _logical_lines(block.text):
        for tokens in _segments(line.removeprefix("$ ")):
            args = _slowfast_args(tokens)
            if args is not None:
                problems += [f"{block.where(offset)}: {p}" for p in check_command(args)]
            elif "-m" in tokens[:-1] and Path(tokens[0]).name in {"python", "python3", "torchrun"}:
                module = tokens[tokens.index("-m") + 1]
                if importlib.util.find_spec(module.split(".")[0]) is None:
                    problems.append(f"{block.where(offset)}: no module {module} to run with -m")
            elif tokens[0] in {"bash", "python", "python3"} and len(tokens) > 1 and tokens[1].startswith("scripts/"):
                if not (ROOT / tokens[1]).is_file():
                    problems.append(f"{block.where(offset)}: {tokens[1]} does not exist")
    return problems


SHELL_BLOCKS = _all_blocks(SHELL_LANGS)


def test_readme_tour_is_runnable():
    readme = [b for b in SHELL_BLOCKS if b.path == ROOT / "README.md"]
    assert any("run" in b.flags for b in readme), "README.md's five-minute tour should be `bash run` blocks"


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.where())
def test_every_documented_command_exists(block):
    problems = check_block(block)
    assert not problems, "\n".join(problems)


def test_checker_catches_renamed_commands_and_options():
    """The checker itself: what a rename would break is reported, correct lines are not."""
    ok = [
        "slowfast train --preset slow_tiny_4x16 --train t.csv --out r --batch-size 8 [--amp auto|fp32|fp16|bf16]",
        "slowfast export int8 M.onnx --calib c.csv [--moving-average|--no-moving-average] [--bias-correction|--no-bias-correction]",
        "OMP_NUM_THREADS=2 python -m slowfast_trt data synth out --videos 8   # comment --not-an-option",
    ]
    for line in ok:
        assert [p for t in _segments(line) for p in check_command(_slowfast_args(t) or [])] == [], line
    bad = {
        "slowfast train --preset x --batchsize 8": "no option --batchsize",
        "slowfast data synthesize out": "no subcommand 'synthesize'",
        "slowfast export engine m.onnx --precision int4": "does not accept ['int4']",
        "slowfast export": "needs a subcommand",
        "x && slowfast eval --ckpt c --views 3": "no option --views",
        "torchrun --nproc-per-node 2 -m cli.main train": "no module cli.main",
    }
    for line, want in bad.items():
        got = check_block(Block(ROOT / "README.md", 0, "bash", (), line))
        assert any(want in p for p in got), (line, got)


_IMPORT = re.compile(r"\s*(from\s+\S+\s+import\s|import\s)")
PY_BLOCKS = [b for b in _all_blocks({"python"}) if any(_IMPORT.match(ln) for ln in b.text.splitlines())]


@pytest.mark.parametrize("block", PY_BLOCKS, ids=lambda b: b.where())
def test_python_block_imports_resolve(block):
    imports = [ln.strip() for ln in block.text.splitlines() if _IMPORT.match(ln)]
    for line in imports:
        try:
            exec(compile(line.split("#")[0], block.where(), "exec"), {})
        except ImportError as e:
            pytest.fail(f"{block.where()}: `{line}` fails: {e}")


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    heads = [ln.lstrip("#").strip() for ln in path.read_text().splitlines() if re.match(r"#{1,6} ", ln)]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("path", _doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files(path):
    """A moved or renamed document or heading breaks the links to it (anchors as GitHub makes them)."""
    missing = []
    for target in _LINK.findall(path.read_text()):
        file, _, anchor = target.partition("#")
        if "://" in file:
            continue
        dest = path.parent / file if file else path
        if not dest.exists():
            missing.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            missing.append(target)
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"


RUN_FILES = sorted({b.path for b in SHELL_BLOCKS if "run" in b.flags})


@pytest.mark.parametrize("path", RUN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_runnable_blocks_run(path, tmp_path):
    """The file's `bash run` blocks, in order, in one fresh folder, with the installed `slowfast` first on PATH."""
    script = "\n".join(b.text for b in blocks(path) if b.lang in SHELL_LANGS and "run" in b.flags)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    start = time.monotonic()
    try:
        r = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_BUDGET_S
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the `bash run` blocks of {path.name} took over {RUN_BUDGET_S} s; make them smaller")
    took = time.monotonic() - start
    assert r.returncode == 0, f"{path.name}: exit {r.returncode} after {took:.0f} s\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
