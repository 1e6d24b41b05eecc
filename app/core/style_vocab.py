"""The style vocabulary: categories, values and the phrasing the model understands.

Values follow the aesthetic labels Wan2.2 was trained with (see ``docs/styles.md``); the phrases
are ours. Each value belongs to a group inside its category: at most one value per group may be
chosen (e.g. one light source, one light quality, one light direction). ``STYLE_ORDER`` is the
order in which categories are woven into the prompt. Validation and weaving: ``app.core.styles``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class StyleCategory(StrEnum):
    LIGHTING = "lighting"
    TIME_OF_DAY = "time_of_day"
    SHOT_SIZE = "shot_size"
    COMPOSITION = "composition"
    LENS = "lens"
    CAMERA_ANGLE = "camera_angle"
    COLOR_TONE = "color_tone"
    CAMERA_MOVEMENT = "camera_movement"


@dataclass(frozen=True)
class StyleChoice:
    """One vocabulary entry: the API value and the phrasing the model understands."""

    value: str
    phrase: str  # English phrasing woven into the prompt
    phrase_zh: str  # Chinese phrasing, used when the prompt is Chinese
    group: str  # at most one choice per group within a category
    aliases: tuple[str, ...] = ()  # other English wordings that count as "already in the prompt"


def _c(value: str, phrase: str, zh: str, group: str, *aliases: str) -> StyleChoice:
    return StyleChoice(value, phrase, zh, group, tuple(aliases))


STYLE_ORDER: tuple[StyleCategory, ...] = (
    StyleCategory.SHOT_SIZE,
    StyleCategory.CAMERA_ANGLE,
    StyleCategory.LENS,
    StyleCategory.COMPOSITION,
    StyleCategory.CAMERA_MOVEMENT,
    StyleCategory.LIGHTING,
    StyleCategory.TIME_OF_DAY,
    StyleCategory.COLOR_TONE,
)

CATEGORY_DESCRIPTIONS: Mapping[StyleCategory, str] = {
    StyleCategory.LIGHTING: "Light source, quality, direction and contrast (one of each group).",
    StyleCategory.TIME_OF_DAY: "When the scene takes place.",
    StyleCategory.SHOT_SIZE: "How much of the subject the frame shows.",
    StyleCategory.COMPOSITION: "Where the subject sits in the frame.",
    StyleCategory.LENS: "Focal length / lens character.",
    StyleCategory.CAMERA_ANGLE: "Camera height and tilt relative to the subject.",
    StyleCategory.COLOR_TONE: "Colour temperature and saturation (one of each group).",
    StyleCategory.CAMERA_MOVEMENT: "How the camera moves during the clip (one per group; 'static' alone).",
}

STYLE_VOCABULARY: Mapping[StyleCategory, tuple[StyleChoice, ...]] = {
    StyleCategory.SHOT_SIZE: (
        _c("extreme_close_up", "extreme close-up shot", "大特写", "size"),
        _c("close_up", "close-up shot", "特写", "size", "close up shot", "closeup shot"),
        _c("medium_close_up", "medium close-up shot", "近景", "size"),
        _c("medium", "medium shot", "中景", "size", "mid shot"),
        _c("medium_wide", "medium wide shot", "中全景", "size"),
        _c("wide", "wide shot", "远景", "size", "long shot"),
        _c("extreme_wide", "extreme wide shot", "大远景", "size", "extreme long shot"),
    ),
    StyleCategory.CAMERA_ANGLE: (
        _c("eye_level", "eye-level shot", "平视镜头", "angle", "eye level angle"),
        _c("low_angle", "low-angle shot", "仰拍镜头", "angle", "low angle view"),
        _c("high_angle", "high-angle shot", "俯拍镜头", "angle", "high angle view"),
        _c("dutch_angle", "Dutch angle", "倾斜镜头", "angle", "dutch tilt"),
        _c("overhead", "overhead top-down shot", "顶部俯视镜头", "angle", "top-down shot"),
        _c("aerial", "aerial shot", "航拍镜头", "angle", "drone shot"),
        _c("over_the_shoulder", "over-the-shoulder shot", "过肩镜头", "angle"),
    ),
    StyleCategory.LENS: (
        _c("ultra_wide", "ultra-wide-angle lens", "超广角镜头", "lens"),
        _c("wide_angle", "wide-angle lens", "广角镜头", "lens", "wide angle shot"),
        _c("fisheye", "fisheye lens", "鱼眼镜头", "lens"),
        _c("normal", "standard lens", "标准镜头", "lens", "normal lens"),
        _c("telephoto", "telephoto lens", "长焦镜头", "lens", "long lens"),
        _c("macro", "macro lens", "微距镜头", "lens"),
    ),
    StyleCategory.COMPOSITION: (
        _c("centered", "centered composition", "中心构图", "composition", "center composition"),
        _c("balanced", "balanced composition", "平衡构图", "composition"),
        _c("symmetrical", "symmetrical composition", "对称构图", "composition"),
        _c("rule_of_thirds", "rule-of-thirds composition", "三分法构图", "composition"),
        _c("left_weighted", "left-weighted composition", "左侧重构图", "composition"),
        _c("right_weighted", "right-weighted composition", "右侧重构图", "composition"),
        _c("short_side", "short-side composition", "短边构图", "composition"),
    ),
    StyleCategory.CAMERA_MOVEMENT: (
        _c("static", "static camera", "固定镜头", "static", "fixed camera", "locked off camera"),
        _c("push_in", "the camera slowly pushes in", "镜头缓缓推进", "dolly", "camera pushes in"),
        _c("pull_out", "the camera slowly pulls out", "镜头缓缓拉远", "dolly", "camera pulls out"),
        _c("pan_left", "the camera pans left", "镜头向左摇", "pan", "camera pans left"),
        _c("pan_right", "the camera pans right", "镜头向右摇", "pan", "camera pans right"),
        _c("tilt_up", "the camera tilts up", "镜头向上摇", "tilt", "camera tilts up"),
        _c("tilt_down", "the camera tilts down", "镜头向下摇", "tilt", "camera tilts down"),
        _c("tracking", "tracking shot following the subject", "跟随主体的跟拍镜头", "path", "tracking shot"),
        _c("orbit", "the camera orbits around the subject", "镜头环绕主体", "path", "orbit shot"),
        _c("crane_up", "the camera cranes up", "镜头升起", "path", "crane up"),
        _c("crane_down", "the camera cranes down", "镜头下降", "path", "crane down"),
        _c("handheld", "handheld camera", "手持镜头", "rig", "hand-held camera"),
    ),
    StyleCategory.LIGHTING: (
        _c("daylight", "natural daylight", "自然日光", "source", "daylight"),
        _c("sunlight", "bright sunlight", "晴朗阳光", "source", "sunny light"),
        _c("overcast", "overcast light", "阴天光线", "source", "overcast lighting"),
        _c("moonlight", "moonlight", "月光", "source"),
        _c("firelight", "firelight", "火光", "source", "fire light"),
        _c("practical", "practical light sources", "场景内实景光源", "source", "practical lighting"),
        _c("artificial", "artificial light", "人工光", "source", "artificial lighting"),
        _c("fluorescent", "fluorescent light", "荧光灯光", "source", "fluorescent lighting"),
        _c("neon", "neon light", "霓虹灯光", "source", "neon lighting", "neon lights"),
        _c("soft", "soft light", "柔光", "quality", "soft lighting"),
        _c("hard", "hard light", "硬光", "quality", "hard lighting"),
        _c("top", "top light", "顶光", "direction", "top lighting"),
        _c("side", "side light", "侧光", "direction", "side lighting"),
        _c("backlight", "backlight", "逆光", "direction", "backlit", "back light"),
        _c("underlight", "underlight", "底光", "direction", "under lighting"),
        _c("rim", "rim light", "轮廓光", "direction", "rim lighting"),
        _c("silhouette", "silhouette lighting", "剪影", "direction", "silhouette"),
        _c("high_contrast", "high contrast", "高对比度", "contrast", "high contrast lighting"),
        _c("low_contrast", "low contrast", "低对比度", "contrast", "low contrast lighting"),
    ),
    StyleCategory.TIME_OF_DAY: (
        _c("day", "daytime", "白天", "time"),
        _c("dawn", "dawn", "黎明", "time"),
        _c("sunrise", "sunrise", "日出", "time"),
        _c("golden_hour", "golden hour", "黄金时刻", "time"),
        _c("sunset", "sunset", "日落", "time"),
        _c("dusk", "dusk", "黄昏", "time"),
        _c("blue_hour", "blue hour", "蓝调时刻", "time"),
        _c("night", "night", "夜晚", "time", "nighttime"),
    ),
    StyleCategory.COLOR_TONE: (
        _c("warm", "warm color tone", "暖色调", "temperature", "warm colour tone", "warm tones"),
        _c("cool", "cool color tone", "冷色调", "temperature", "cool colour tone", "cool tones"),
        _c("saturated", "saturated colors", "高饱和度", "saturation", "saturated colours"),
        _c("desaturated", "desaturated colors", "低饱和度", "saturation", "desaturated colours"),
        _c("black_and_white", "black and white", "黑白画面", "saturation", "monochrome"),
    ),
}

CATEGORY_ALIASES: Mapping[str, StyleCategory] = {"colour_tone": StyleCategory.COLOR_TONE}
