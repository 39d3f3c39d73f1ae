"""Report figures and filters (pure); the SQL that feeds them is plugin/adapters/report_queries.py."""
