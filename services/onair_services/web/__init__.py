"""web: the pages people see — server-rendered HTML (Jinja2) and a little plain JavaScript."""
