"""Runners: the code that executes a model and streams its tokens."""
