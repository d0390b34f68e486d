"""Video in, clips out: manifests, the clip-index math, DALI pipelines and the PyAV reference decoder."""
