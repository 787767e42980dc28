"""Reading our own exported folders back: the manifest checked as untrusted
input, the frame transformers builds, and the module kinds rebuilt from
their tensors."""
