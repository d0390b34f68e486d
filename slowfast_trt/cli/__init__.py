"""The `slowfast` command: parses options and delegates to one public function per subcommand."""
