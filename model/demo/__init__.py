"""Holds the shipped demo checkpoint (`weights/`, see `model.presets.DEMO_WEIGHTS_DIR`); no code.

The code that trains it lives in the top-level `training/demo/` package.
"""
