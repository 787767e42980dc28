"""The run store (append-only JSONL), the provenance that rebuilds what a run
measured, and the Pareto front."""
