"""Speed protocols (LM and classifier), repeats, memory, machine load,
environment and interleaved rounds: how every speed number is taken."""
