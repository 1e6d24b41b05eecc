"""Write the gateway's OpenAPI document to openapi/openapi.json (committed; a test guards drift).

.venv/bin/python scripts/export_openapi.py          # rewrite the file
.venv/bin/python scripts/export_openapi.py --check  # exit 1 if the file is out of date
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "openapi" / "openapi.json"


def build_spec() -> dict[str, Any]:
    """The spec exactly as the app serves it at /openapi.json, built with default settings."""
    from app.api.main import create_app
    from app.core.config import Settings

    # Default settings only: neither the environment nor a .env file may change the committed spec.
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("WANSERVE_")}
    try:
        app = create_app(Settings(_env_file=None))
    finally:
        os.environ.update(saved)
    spec: dict[str, Any] = app.openapi()
    return spec


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def main() -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    text = render(build_spec())
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run scripts/export_openapi.py", file=sys.stderr)
            return 1
        print(f"{OUT.relative_to(ROOT)} is up to date")
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
