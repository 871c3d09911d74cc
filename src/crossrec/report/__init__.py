"""Report stage: markdown, JSON-ready summaries, PNG plots and TensorBoard curves."""
