"""restem: ReST^EM self-training as Dagster assets over Parquet.

The subpackages and modules here are the pure library (rewards/, generation/, tasks/,
sampling, finetune, evaluation, storage, analytics, ...): no Dagster, testable alone.
`restem_assets.assets` is the one place with Dagster definitions; see ARCHITECTURE.md.
"""
