"""Versioned SQL migrations of the webhooks schema (installed as ``worker.migrations``)."""
