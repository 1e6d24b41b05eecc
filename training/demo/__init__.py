"""The demo model's procedural world, trainer, fine-tune, evaluation and export.

Run it with `training/train_demo.py`; it writes the checkpoint to `model.presets.DEMO_WEIGHTS_DIR`,
where the loader finds it.
"""
