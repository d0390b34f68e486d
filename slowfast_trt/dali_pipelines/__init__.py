"""Manifest rows in, clips out: per-sample plans, the clip-index math, DALI graphs and their loader, the CPU pipelines' spatial ops, and the PyAV reference decoder."""
