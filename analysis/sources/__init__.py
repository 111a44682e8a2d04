"""Where runs come from: the run store, wandb run folders on disk, a wandb project online.

Each source module turns one run into a ``RunData`` (its runs-frame row and Arrow tables of its
metrics and layer rows); ``analysis.load`` caches and assembles them into ``Frames``.
"""
