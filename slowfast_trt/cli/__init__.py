"""The `slowfast` command: parses options and delegates to one public function per subcommand."""

from slowfast_trt.common.threads import set_openmp_env

set_openmp_env()  # before any subcommand imports torch: OpenMP reads its wait policy once, when it loads
