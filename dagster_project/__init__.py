"""Dagster wiring for restem: Definitions, jobs, the loop sensor, the instance and the `restem` CLI.

The definitions themselves (assets, checks, resources, partitions) live in `restem_assets.assets`.
"""
