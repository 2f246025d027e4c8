"""Data loading, the training loop and metrics."""
