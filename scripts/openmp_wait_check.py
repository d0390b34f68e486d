"""Does torch's OpenMP spin between parallel regions, and does OMP_WAIT_POLICY=PASSIVE (set before torch loads) stop it?

    .venv/bin/python scripts/openmp_wait_check.py

Runs the same loop (a 2-thread matmul, then 2 ms idle) in three child processes: the policy unset, PASSIVE set
before torch is imported (as the `slowfast` command does), and PASSIVE set after the import. Spinning threads burn
CPU while the process is idle, so CPU time / wall time shows it: near 1 (a core kept busy) when spinning, well
under 1 when waits are passive. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

LOOP = """
import os, time, torch
if os.environ.get("LATE"):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
torch.set_num_threads(2)
a = torch.randn(256, 256)
start, cpu0 = time.perf_counter(), time.process_time()
for _ in range(200):
    a @ a
    time.sleep(0.002)
print((time.process_time() - cpu0) / (time.perf_counter() - start))
"""


def ratio(extra: dict[str, str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")} | extra
    return float(subprocess.run([sys.executable, "-c", LOOP], env=env, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    result = {
        "cpu_per_wall_unset": ratio({}),
        "cpu_per_wall_passive_before_import": ratio({"OMP_WAIT_POLICY": "PASSIVE"}),
        "cpu_per_wall_passive_after_import": ratio({"LATE": "1"}),
        "loadavg": list(os.getloadavg()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
