"""PGO profile store: the pprof codec and merge (``pprof``), storage backends (``storage``), the
sampling profiler for Python services (``profiler``). See docs/pgo.md."""
