"""Lightning callbacks of the training run (``experiments.train`` wires them): what a run
records, times, measures and how it stops."""
