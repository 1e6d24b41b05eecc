"""Calibrate step caching for a model and write cache_calibration.json beside its weights.

PYTHONPATH=$PWD .venv/bin/python scripts/calibrate_cache.py --model wanserve-demo
"""

from __future__ import annotations

from model.cache_calibrate import main

if __name__ == "__main__":
    raise SystemExit(main())
