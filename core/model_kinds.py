"""The model kinds the workbench handles, named once. ``core.models.description``
resolves a model's kind at load; ``core.jobs.tasks`` maps each to the Task
that builds, times and scores it; the runtime registry and the results'
metrics use the same names."""

CAUSAL_LM = "causal-lm"
SEQUENCE_CLASSIFICATION = "sequence-classification"
