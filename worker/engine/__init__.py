"""The delivery engine: claim, send and record deliveries in batches, many in flight."""
