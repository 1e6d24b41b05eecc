"""`/v1/models` carries each served model's own example prompts (the web page offers them)."""

from __future__ import annotations

import json
from pathlib import Path

from app.core.schemas import ModelInfo
from model.presets import PRESETS, ModelPreset
from training.demo.world import COLOR_NAMES, SHAPES


def test_every_preset_has_examples_that_survive_the_registry_round_trip() -> None:
    for preset in PRESETS.values():
        assert preset.example_prompts, preset.model_id
        wire = json.dumps(preset.to_dict())  # what a worker publishes in its heartbeat
        assert ModelPreset.from_dict(json.loads(wire)) == preset
        assert ModelInfo.model_validate_json(wire).example_prompts == list(preset.example_prompts)


def test_the_demo_suggests_only_what_it_can_draw() -> None:
    demo = PRESETS["wanserve-demo"].example_prompts
    assert not any("corgi" in p for p in demo)
    for prompt in demo:
        assert any(c in prompt for c in COLOR_NAMES) and any(s in prompt for s in SHAPES), prompt


def test_the_shipped_demo_checkpoint_carries_them() -> None:
    """The demo's weights folder holds its preset (model/loading.py reads it): it must say the same."""
    shipped = Path(__file__).resolve().parents[2] / "model" / "demo" / "weights" / "wanserve_preset.json"
    assert ModelPreset.from_dict(json.loads(shipped.read_text())) == PRESETS["wanserve-demo"]
