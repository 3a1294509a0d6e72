"""`make chaos`: faults injected into the production topology under load, and what a user would notice."""
