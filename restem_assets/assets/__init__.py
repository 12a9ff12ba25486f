"""Thin Dagster asset definitions; the logic they call lives in the plain modules."""
