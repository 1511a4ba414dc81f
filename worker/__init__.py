"""The service side of webhooks-outbox: relay, workers, delivery, dead letters, CLI."""
