"""Training: the loop (``train``), the data stream and its pre-flight check (``loader``), the optimiser and schedule
(``optim``), the run log (``runlog``), distributed processes (``distributed``), checkpoints written
(``checkpoint``), and the run folder's lock and signal handling (``runfolder``)."""
