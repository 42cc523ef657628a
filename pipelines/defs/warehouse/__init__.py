"""Warehouse: dbt project wiring and identity resolution (pure modules + assets.py for Dagster)."""
