"""Serving a run bundle: the ANN index and what answers requests with it."""
