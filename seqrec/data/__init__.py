"""Datasets: load and validate, split, sequences, the demo shop."""
