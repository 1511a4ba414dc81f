"""Metrics, health and readiness, logs."""
