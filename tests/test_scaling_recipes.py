"""The cluster recipes in docs/scaling.md, checked for what can be checked without a cluster: the Kubernetes YAML
parses into a headless Service and an indexed Job, and every torchrun and slowfast option in every recipe exists."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml
from torch.distributed.run import get_args_parser

from tests.test_docs import blocks, check_command

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "scaling.md"


def _torchrun_problems(tokens: list[str]) -> list[str]:
    """Unknown torchrun options before `-m MODULE`, and a module other than slowfast_trt."""
    known = {o for a in get_args_parser()._actions for o in a.option_strings}
    head = tokens[: tokens.index("-m")] if "-m" in tokens else tokens
    problems = [f"torchrun has no option {t}" for t in head if t.startswith("--") and t.split("=")[0] not in known]
    if "-m" not in tokens or tokens[tokens.index("-m") + 1] != "slowfast_trt":
        problems.append(f"torchrun does not run -m slowfast_trt: {' '.join(tokens)}")
    return problems


def _commands(text: str) -> list[list[str]]:
    """The torchrun and slowfast invocations in shell text (continuations joined, comments dropped)."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens and tokens[0] in {"srun", "export"}:
            tokens = tokens[1:]
        if tokens and tokens[0] in {"torchrun", "slowfast"}:
            out.append(tokens)
    return out


def _check(tokens: list[str]) -> list[str]:
    if tokens[0] == "torchrun":
        return _torchrun_problems(tokens) + check_command(tokens[tokens.index("-m") + 2 :] if "-m" in tokens else [])
    return check_command(tokens[1:])


def test_slurm_recipes_use_existing_torchrun_and_slowfast_options():
    shell = "\n".join(b.text for b in blocks(DOC) if b.lang == "bash")
    cmds = _commands(shell)
    assert any(c[0] == "torchrun" and "--rdzv-backend" in c and "c10d" in c for c in cmds), "a multi-node torchrun recipe"
    assert "srun torchrun" in shell and "#SBATCH --array=" in shell, "an sbatch script and an array"
    assert {tuple(c[1:3]) for c in cmds if c[0] == "slowfast"} >= {("data", "prepare"), ("data", "merge"), ("eval", "merge")}
    problems = [p for c in cmds for p in _check(c)]
    assert not problems, problems


def test_kubernetes_manifest_is_an_indexed_job_running_torchrun():
    [text] = [b.text for b in blocks(DOC) if b.lang == "yaml"]
    docs = list(yaml.safe_load_all(text))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Service", "Job"} and kinds["Service"]["spec"]["clusterIP"] == "None"
    job = kinds["Job"]["spec"]
    assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"]
    [container] = job["template"]["spec"]["containers"]
    argv = container["command"] + container["args"]
    assert argv[:2] == ["bash", "-c"]
    [cmd] = _commands(argv[2])
    assert cmd[0] == "torchrun" and cmd[cmd.index("--nnodes") + 1] == str(job["completions"])
    assert cmd[cmd.index("--rdzv-endpoint") + 1].startswith(f"{kinds['Job']['metadata']['name']}-0.{job['template']['spec']['subdomain']}:")
    assert not _check(cmd), _check(cmd)
