"""The management HTTP API over the service layer (FastAPI; needs the `api` extra)."""
