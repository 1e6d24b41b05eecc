"""README documents every setting and starts with the two commands."""

from __future__ import annotations

from app.core.config import Settings
from tests.service_support import REPO


def test_every_setting_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [
        f"WANSERVE_{n.upper()}" for n in Settings.model_fields if f"`WANSERVE_{n.upper()}`" not in readme
    ]
    assert not missing, f"README.md lacks: {missing}"


def test_first_commands_are_make_serve_and_make_test() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands[:2] == ["make serve", "make test"]
