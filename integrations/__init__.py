"""`make integrations`: real third-party clients against a running platform (docs/integrations/)."""
