"""Event ingestion: wire schemas, the group-commit buffer, the spool and the flusher."""
