"""profstore: the PGO profile store service (upload, list, merge, delete, view). See docs/pgo.md."""
