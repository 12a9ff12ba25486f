"""Dagster wiring for restem: Definitions, resources, partitions, jobs, sensors."""
