"""The usage-billing service: usage events in, usage statistics and billing facts out (seed 004)."""
