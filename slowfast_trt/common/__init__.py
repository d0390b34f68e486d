"""Small shared pieces: the project exception, atomic file writes, device selection, environment facts, thread budget.

Import-free on purpose: `slowfast_trt.cli` sets OpenMP's environment from `common.threads` before torch loads.
"""
