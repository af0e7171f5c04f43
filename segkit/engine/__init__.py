"""Training, evaluation, prediction and export."""
