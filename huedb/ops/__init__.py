"""Operations: backup and restore, Parquet export and import, Chroma import, stats, verify."""
