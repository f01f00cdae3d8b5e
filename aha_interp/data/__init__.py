"""Data: synthetic speech and the task suite."""
