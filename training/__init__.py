"""Training code: what builds checkpoints, kept out of `model/` (which holds only what serving loads)."""
