"""The search under constraints (issue 15), in parts the Search job
(``core/jobs/search.py``) composes: the user's limits and objective
(``limits.py``), the candidates (``candidates.py``), the cheap quality proxy
and where it runs (``proxy.py``, ``executors.py``, ``proxy_cache.py``),
what a new search reuses from the run store (``reuse.py``), the order in
which proxies are promoted to full measurement (``promotion.py``) and the
events the job yields (``events.py``). Nothing here imports torch at module
level, so ``import core`` stays cheap."""
