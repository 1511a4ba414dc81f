"""The wire, below the engine and the service layer: request, DNS guard, sender, one attempt."""
