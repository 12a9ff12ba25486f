"""What users read: DuckDB over the whole history (`analytics`), the progress table and chart
(`progress_report`) and what each stage cost (`costs`)."""
