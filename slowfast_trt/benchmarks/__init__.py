"""GFLOPs tables, clips/s and accuracy benchmarks; every result is a JSON file plus a Markdown table."""
