"""`python -m slowfast_trt.serving.validate REPO` (in Triton's venv): parse every config.pbtxt with Triton's ModelConfig protobuf; JSON out."""

from __future__ import annotations

import json
import sys

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.serving.repository import check_configs


def main(argv: list[str]) -> int:
    try:
        print(json.dumps(check_configs(argv[0]), indent=2))
    except SlowFastError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
