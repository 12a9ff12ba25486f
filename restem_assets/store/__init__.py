"""Storage: hive-layout Parquet tables under one fsspec root (`tables`), their Arrow schemas, atomic
publishing (`atomic`), crash-safe chunks of long steps (`staging`) and partition locks (`locks`)."""
