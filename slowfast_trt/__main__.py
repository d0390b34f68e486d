"""`python -m slowfast_trt ...` is the `slowfast` command."""

from slowfast_trt.cli.main import main

main()
