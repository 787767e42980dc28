"""Knowledge distillation: build a smaller student from a loaded teacher
(structured pruning initialised from the teacher's weights) and train it to
match the teacher's softened next-token distribution, as a cancellable,
checkpointed, resumable job."""
