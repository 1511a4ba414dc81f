"""Pure decisions: signing, outcome, retry schedule, destination checks, circuits, plans."""
