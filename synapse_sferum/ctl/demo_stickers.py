"""The demo school's sticker pack, drawn here from shapes (and Pillow's own bundled font for the
mark), so the demo ships no pictures of anyone else's: written by `sferumctl demo-data` into
DIR/stickers for `sferumctl stickers import`."""

from __future__ import annotations

import io
import math
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont

SIDE = 256
Draw = Callable[[ImageDraw.ImageDraw], None]

YELLOW, RED, GREEN, BLUE = "#ffd23f", "#e63946", "#2a9d8f", "#457b9d"
INK, PAPER, ORANGE = "#1d3557", "#f1faee", "#f4a261"


def _smile(d: ImageDraw.ImageDraw) -> None:
    d.ellipse((16, 16, 240, 240), fill=YELLOW, outline=INK, width=8)
    d.ellipse((80, 80, 108, 116), fill=INK)
    d.ellipse((148, 80, 176, 116), fill=INK)
    d.arc((64, 96, 192, 200), start=20, end=160, fill=INK, width=12)


def _star(d: ImageDraw.ImageDraw) -> None:
    points = [
        (
            128 + (112 if i % 2 == 0 else 48) * math.sin(i * math.pi / 5),
            136 - (112 if i % 2 == 0 else 48) * math.cos(i * math.pi / 5),
        )
        for i in range(10)
    ]
    d.polygon(points, fill=YELLOW, outline=ORANGE, width=8)


def _heart(d: ImageDraw.ImageDraw) -> None:
    d.ellipse((28, 40, 136, 148), fill=RED)
    d.ellipse((120, 40, 228, 148), fill=RED)
    d.polygon([(34, 116), (222, 116), (128, 228)], fill=RED)


def _book(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((32, 48, 124, 208), fill=PAPER, outline=BLUE, width=8)
    d.rectangle((132, 48, 224, 208), fill=PAPER, outline=BLUE, width=8)
    for y in range(80, 190, 24):
        d.line((48, y, 108, y), fill=BLUE, width=5)
        d.line((148, y, 208, y), fill=BLUE, width=5)


def _sun(d: ImageDraw.ImageDraw) -> None:
    for i in range(12):
        angle = i * math.pi / 6
        d.line(
            (128 + 70 * math.cos(angle), 128 + 70 * math.sin(angle),
             128 + 118 * math.cos(angle), 128 + 118 * math.sin(angle)),
            fill=ORANGE,
            width=12,
        )  # fmt: skip
    d.ellipse((64, 64, 192, 192), fill=YELLOW, outline=ORANGE, width=6)


def _five(d: ImageDraw.ImageDraw) -> None:
    d.ellipse((16, 16, 240, 240), fill=GREEN, outline=INK, width=8)
    font = ImageFont.load_default(size=170)
    d.text((128, 132), "5", fill=PAPER, font=font, anchor="mm")


def _apple(d: ImageDraw.ImageDraw) -> None:
    d.ellipse((40, 64, 224, 236), fill=RED)
    d.line((132, 70, 144, 24), fill=INK, width=10)
    d.ellipse((146, 28, 206, 64), fill=GREEN)


def _pencil(d: ImageDraw.ImageDraw) -> None:
    d.polygon([(60, 220), (36, 236), (44, 204)], fill=INK)
    d.polygon([(44, 204), (60, 220), (208, 72), (192, 56)], fill=ORANGE, outline=INK, width=4)
    d.polygon([(192, 56), (208, 72), (228, 52), (212, 36)], fill=RED, outline=INK, width=4)


# File name (the :shortcode: the pack gets) -> how it is drawn.
STICKERS: dict[str, Draw] = {
    "улыбка": _smile,
    "звезда": _star,
    "сердце": _heart,
    "книга": _book,
    "солнце": _sun,
    "пятёрка": _five,
    "яблоко": _apple,
    "карандаш": _pencil,
}


def render(draw: Draw) -> bytes:
    image = Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))
    draw(ImageDraw.Draw(image))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def demo_stickers() -> dict[str, bytes]:
    """File name -> PNG bytes of every demo sticker."""
    return {f"{name}.png": render(draw) for name, draw in STICKERS.items()}
