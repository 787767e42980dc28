"""Measuring quality: perplexity on fixed windows, fidelity to a reference
model, and task accuracy. Every number carries the protocol it came from."""
