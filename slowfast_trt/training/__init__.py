"""The training loop (AMP, SGD, cosine schedule with warm-up, DDP) and multi-view evaluation."""
