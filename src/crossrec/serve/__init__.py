"""Serve stage: a run bundle behind HTTP, with logged feedback and catalogue changes kept durably."""
