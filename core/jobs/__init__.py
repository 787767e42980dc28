"""THE way in: every user operation is a job here, and the window and the CLI
call only jobs (and read-only types).

A job is a generator: a frozen request dataclass in, a progress sink and a
cancel token beside it, frozen events out (checked for cancel inside inner
loops). ``app`` runs it on a worker thread and the CLI iterates it directly.
This module holds what every job takes: the cancel flag and the progress sink.
"""
