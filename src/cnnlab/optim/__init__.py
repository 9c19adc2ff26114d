"""Optimisers (handbook §11.2.4) and learning-rate schedules (§11.2.2)."""
