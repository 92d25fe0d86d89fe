"""search: channels on air found by the words of their titles and tags (docs/search.md).

A projection (``search.index``) of the channels' status, title, tags, options and metadata into a
full-text index of the service's own database: SQLite FTS5 by default, PostgreSQL full-text search
(``tsvector`` + GIN, ``simple`` configuration) when ``DATABASE_URL`` is PostgreSQL.
"""
