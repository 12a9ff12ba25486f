"""restem's DuckDB queries, installed as the package `restem_sql` so every install can find them.

`views.sql` defines one view per table; every other `.sql` file here is a named
query (`restem sql --list`).
"""
