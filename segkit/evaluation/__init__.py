"""Scoring a trained network on a validation split or on every test set under a dataset root."""
