"""The headless command line: one module per command, each parses, calls a job
and prints."""
