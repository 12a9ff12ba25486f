"""restem: ReST^EM self-training as Dagster assets over Parquet.

Plain modules here (storage, rewards, filtering, metrics, engines, tasks) hold the
logic and are testable without Dagster; `restem_assets.assets` holds thin asset
definitions that call them.
"""
