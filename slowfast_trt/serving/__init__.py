"""Serving: exported SlowFast models behind a real Triton Inference Server.

    slowfast export triton ARTIFACT --out REPO     # serving.repository: the model repository
    slowfast serve REPO                            # serving.server: the bundled tritonserver (PyTriton's wheel)
    slowfast bench serve URL --model NAME          # benchmarks.serve: bounded tritonclient load test + parity

The server and every client run in their own virtual environment (serving.env) because PyTriton and
tritonclient 2.51 need numpy < 2 while the project runs on numpy 2. See docs/serving.md.
"""
