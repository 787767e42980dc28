"""Serving a model over HTTP: an OpenAI-compatible API (FastAPI) with a
bearer token, limits, a bounded queue in front of one generation thread, and
Prometheus metrics. The Serve job (core/jobs/serve.py) starts it; importing
this package stays cheap (FastAPI and torch are imported by the modules that
use them)."""
