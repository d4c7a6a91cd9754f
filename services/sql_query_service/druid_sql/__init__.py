"""Druid SQL → PostgreSQL: one sqlglot pass per module, composed by pipeline.py."""
