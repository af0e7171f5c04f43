"""Training: the loop (``train``), the data stream (``loader``), the optimiser and schedule (``optim``), the run
log (``runlog``), distributed processes (``distributed``) and checkpoints written (``checkpoint``)."""
