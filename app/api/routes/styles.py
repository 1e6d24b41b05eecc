"""`GET /v1/styles`: the cinematic style vocabulary accepted in the create request's `style`."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import OwnerDep
from app.core.styles import StyleCatalogPublic, apply_style, style_catalog

router = APIRouter(tags=["styles"])

_EXAMPLE_STYLE = {"shot_size": "close_up", "lighting": ["soft", "backlight"], "color_tone": "warm"}
_DESCRIPTION = (
    "Every `style` category with its allowed values, the phrase each value adds to the prompt "
    "(English, and Chinese for Chinese prompts) and how many values it takes (one per group). "
    "Categories are woven in the order given by `order`. Example: `style` "
    f"`{_EXAMPLE_STYLE}` turns 'A cat on a sofa' into '{apply_style('A cat on a sofa', _EXAMPLE_STYLE)}'"
)


def _example() -> dict[str, object]:
    catalog = style_catalog().model_dump()
    for cat in catalog["data"]:
        cat["values"] = cat["values"][:2]  # keep the documented example short
    return catalog


@router.get(
    "/v1/styles",
    response_model=StyleCatalogPublic,
    summary="List style controls",
    description=_DESCRIPTION,
    responses={
        200: {
            "content": {
                "application/json": {
                    "examples": {"catalog": {"summary": "Vocabulary (shortened)", "value": _example()}}
                }
            }
        },
        401: {},
        429: {},
    },
)
async def list_styles(_: OwnerDep) -> StyleCatalogPublic:
    """Static data; the API key is checked like on every other `/v1` route."""
    return style_catalog()
