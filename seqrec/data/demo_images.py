"""Product pictures of the demo shop: a type's silhouette in a colour, overlaid with a pattern.

`render_item` draws one product as `seqrec.data.demo` writes it to ``images/``: the category
decides the silhouette, the colour the fill, and the pattern (found ONLY in the image) a second
colour laid over the garment.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {  # colour name -> RGB
    "black": (35, 35, 38),
    "white": (250, 250, 248),
    "grey": (140, 140, 145),
    "navy": (30, 45, 100),
    "blue": (80, 150, 220),
    "red": (200, 35, 40),
    "green": (40, 130, 60),
    "yellow": (240, 205, 50),
    "pink": (240, 150, 185),
    "beige": (215, 195, 160),
}

# Silhouettes as polygons, "x,y x,y ..." in percent of the canvas (x right, y down), plus
# detail lines drawn in the outline colour.
SHAPES = {
    "t-shirt": "30,15 42,12 50,17 58,12 70,15 95,30 85,40 75,34 75,85 25,85 25,34 15,40 5,30",
    "sweater": "30,12 50,15 70,12 92,25 98,75 86,77 78,38 76,85 24,85 22,38 14,77 2,75 8,25",
    "dress": "38,8 45,8 50,14 55,8 62,8 64,30 60,42 85,92 15,92 40,42 36,30",
    "skirt": "30,25 70,25 88,78 12,78",
    "trousers": "25,8 75,8 80,94 56,94 50,30 44,94 20,94",
    "shorts": "20,28 80,28 88,66 56,68 50,45 44,68 12,66",
    "jacket": "32,10 50,30 68,10 90,20 98,80 86,82 78,40 78,92 22,92 22,40 14,82 2,80 10,20",
    "shoes": "6,42 30,42 36,50 55,55 82,60 95,67 95,76 6,76",
    "bag": "18,40 82,40 88,85 12,85",
    "hat": "28,56 32,32 50,27 68,32 72,56",
}
DETAIL_LINES = {
    "jacket": "50,30 50,92",
    "skirt": "29,30 71,30",
    "trousers": "25,14 75,14",
    "shoes": "6,71 95,71",
}
BACKGROUND = (226, 226, 230)
OUTLINE = (55, 55, 60)
_MASKS: dict[tuple[str, tuple[int, int]], tuple[np.ndarray, np.ndarray]] = {}


def _silhouette(category: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(garment mask, outline mask) as bool [height, width] arrays, cached per size."""
    key = (category, size)
    if key not in _MASKS:
        width, height = size

        def scale(points: str) -> list[tuple[float, float]]:
            pairs = [point.split(",") for point in points.split()]
            return [(float(x) * (width - 1) / 100, float(y) * (height - 1) / 100) for x, y in pairs]

        fill = Image.new("L", size, 0)
        draw = ImageDraw.Draw(fill)
        draw.polygon(scale(SHAPES[category]), fill=255)
        if category == "bag":  # handle
            box = scale("32,22 68,58")
            draw.arc(box, 180, 360, fill=255, width=max(2, width // 16))
        if category == "hat":  # brim
            draw.ellipse(scale("8,50 92,64"), fill=255)
        mask = np.asarray(fill) > 0
        inner = mask.copy()
        inner[1:] &= mask[:-1]
        inner[:-1] &= mask[1:]
        inner[:, 1:] &= mask[:, :-1]
        inner[:, :-1] &= mask[:, 1:]
        lines = Image.new("L", size, 0)
        if category in DETAIL_LINES:
            ImageDraw.Draw(lines).line(scale(DETAIL_LINES[category]), fill=255, width=1)
        outline = (mask & ~inner) | (np.asarray(lines) > 0)
        _MASKS[key] = (mask, outline)
    return _MASKS[key]


def _pattern_mask(pattern: str, size: tuple[int, int], offset: int) -> np.ndarray:
    """Where the pattern's second colour goes, as a bool [height, width] array."""
    width, height = size
    s = max(3, width // 8)  # stripe width / cell size in pixels
    y, x = np.mgrid[0:height, 0:width]
    x = x + offset
    if pattern == "solid":
        return np.zeros((height, width), dtype=bool)
    if pattern == "stripes":
        return (y + offset) % (2 * s) < s
    if pattern == "dots":
        dx, dy = x % (2 * s) - s, (y + offset) % (2 * s) - s
        return dx * dx + dy * dy <= (0.55 * s) ** 2
    if pattern == "checks":
        return (x // s + y // s) % 2 == 0
    if pattern == "zigzag":
        return (y + np.abs(x % (2 * s) - s)) % (2 * s) < 0.7 * s
    if pattern == "diagonal":
        return (x + y) % (2 * s) < s
    raise ValueError(f"unknown pattern {pattern!r}")


def render_item(
    category: str,
    colour: str,
    pattern: str,
    size: tuple[int, int] = (64, 96),
    rng: np.random.Generator | None = None,
) -> Image.Image:
    """Draw one product: the type's silhouette in the colour, overlaid with the pattern.

    ``rng`` (if given) shifts the pattern and jitters the shade a little, so that products
    sharing all three attributes still differ slightly.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    width, height = size
    mask, outline = _silhouette(category, (width, height))
    s = max(3, width // 8)
    offset = int(rng.integers(2 * s))
    base = np.clip(np.array(COLOURS[colour]) + rng.integers(-8, 9, size=3), 0, 255)
    luminance = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2]
    second = base * 0.45 if luminance > 150 else base * 0.35 + 255 * 0.65
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    pixels[mask] = base
    pixels[mask & _pattern_mask(pattern, (width, height), offset)] = second.astype(np.uint8)
    pixels[outline] = OUTLINE
    return Image.fromarray(pixels, "RGB")
