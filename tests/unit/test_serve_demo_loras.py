"""`wanserve serve` of the built-in demo model lists the demo's own LoRAs unless a folder is set."""

from __future__ import annotations

from pathlib import Path

from app.cli.serve import with_demo_loras
from app.core.config import Settings
from app.core.loras import DEMO_LORA_DIR, catalog


def test_the_demo_model_gets_its_lora_folder_by_default() -> None:
    s = with_demo_loras(Settings(model="wanserve-demo"))
    assert s.lora_dir == DEMO_LORA_DIR
    assert "wanserve-demo-lightning" in [i.id for i in catalog(s.lora_dir)]


def test_a_set_folder_or_another_model_is_left_alone(tmp_path: Path) -> None:
    assert with_demo_loras(Settings(model="wanserve-demo", lora_dir=tmp_path)).lora_dir == tmp_path
    assert with_demo_loras(Settings(model="wan2.2-ti2v-5b")).lora_dir is None
    # a demo-named model loaded from another folder is not the shipped demo checkpoint
    assert with_demo_loras(Settings(model="wanserve-demo", model_path=str(tmp_path))).lora_dir is None
