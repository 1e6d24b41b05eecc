"""The `wanserve-demo` preset (defined in `model.presets`) and where its weights live."""

from __future__ import annotations

from pathlib import Path

from model.presets import WANSERVE_DEMO

__all__ = ["WANSERVE_DEMO", "WEIGHTS_DIR"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
