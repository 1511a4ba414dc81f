"""The service layer the CLI and the HTTP API share: endpoints, deliveries, dead letters."""
