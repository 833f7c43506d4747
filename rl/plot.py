"""A small PNG line-chart writer (standard library only) for plotting metrics such as reward and accuracy
against training steps, plus a reader for the PNGs it writes so that output can be checked without an image
library."""
from __future__ import annotations

import math
import numbers
import os
import struct
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path

# Distinct series colours (the matplotlib "tab10" cycle), assigned in the order of the ``series`` dict.
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
TEXT = (30, 30, 30)
GRID = (228, 228, 228)
LEGEND_FRAME = (160, 160, 160)
MIN_SIZE = 200

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# 5x7 bitmap font: each glyph is 7 rows, top first, two hex digits per row, bit 4 the leftmost column.
_GLYPHS = {
    "0": "0e11131519110e", "1": "040c040404040e", "2": "0e11010204081f", "3": "1f02040201110e",
    "4": "02060a121f0202", "5": "1f101e0101110e", "6": "0608101e11110e", "7": "1f010204080808",
    "8": "0e11110e11110e", "9": "0e11110f01020c",
    "A": "0e1111111f1111", "B": "1e11111e11111e", "C": "0e11101010110e", "D": "1c12111111121c",
    "E": "1f10101e10101f", "F": "1f10101e101010", "G": "0e11101711110f", "H": "1111111f111111",
    "I": "0e04040404040e", "J": "0702020202120c", "K": "11121418141211", "L": "1010101010101f",
    "M": "111b1515111111", "N": "11111915131111", "O": "0e11111111110e", "P": "1e11111e101010",
    "Q": "0e11111115120d", "R": "1e11111e141211", "S": "0f10100e01011e", "T": "1f040404040404",
    "U": "1111111111110e", "V": "11111111110a04", "W": "1111111515150a", "X": "11110a040a1111",
    "Y": "1111110a040404", "Z": "1f01020408101f",
    "a": "00000e010f110f", "b": "1010161911111e", "c": "00000e1010110e", "d": "01010d1311110f",
    "e": "00000e111f100e", "f": "0609081c080808", "g": "000f11110f010e", "h": "10101619111111",
    "i": "04000c0404040e", "j": "0200060202120c", "k": "10101214181412", "l": "0c04040404040e",
    "m": "00001a15151111", "n": "00001619111111", "o": "00000e1111110e", "p": "00001e111e1010",
    "q": "00000d130f0101", "r": "00001619101010", "s": "00000e100e011e", "t": "08081c08080906",
    "u": "0000111111130d", "v": "00001111110a04", "w": "0000111115150a", "x": "0000110a040a11",
    "y": "000011110f010e", "z": "00001f0204081f",
    " ": "00000000000000", ".": "00000000000c0c", ",": "000000000c0408", ":": "000c0c000c0c00",
    ";": "000c0c000c0408", "-": "0000001f000000", "+": "0004041f040400", "_": "0000000000001f",
    "/": "00010204081000", "(": "02040808080402", ")": "08040202020408", "%": "18190204081303",
    "=": "00001f001f0000", "<": "02040810080402", ">": "08040201020408", "[": "0e08080808080e",
    "]": "0e02020202020e", "'": "0c040800000000",
}
_UNKNOWN_GLYPH = "1f11111111111f"
_GLYPH_W, _GLYPH_H, _ADVANCE = 5, 7, 6


def _glyph_rows(char: str) -> list[int]:
    hexrows = _GLYPHS.get(char, _UNKNOWN_GLYPH)
    return [int(hexrows[i:i + 2], 16) for i in range(0, 14, 2)]


def text_width(text: str, scale: int = 1) -> int:
    return max(0, len(text) * _ADVANCE * scale - scale)


class _Canvas:
    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.pixels = bytearray(b"\xff" * (width * height * 3))

    def set(self, x: int, y: int, colour: tuple[int, int, int]) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i:i + 3] = bytes(colour)

    def rect(self, x0: int, y0: int, x1: int, y1: int, colour, *, fill: bool = True) -> None:
        """Inclusive corners; ``fill=False`` draws the 1 px outline only."""
        for y in range(y0, y1 + 1):
            if fill or y in (y0, y1):
                for x in range(x0, x1 + 1):
                    self.set(x, y, colour)
            else:
                self.set(x0, y, colour)
                self.set(x1, y, colour)

    def line(self, x0: int, y0: int, x1: int, y1: int, colour, *, thickness: int = 1) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            for oy in range(thickness):
                for ox in range(thickness):
                    self.set(x0 + ox, y0 + oy, colour)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, text: str, colour, *, scale: int = 1, vertical: bool = False) -> None:
        """Top-left at (x, y); ``vertical`` turns the text 90 degrees to read bottom to top, starting at
        (x, y) as its bottom-left corner."""
        for n, char in enumerate(text):
            for row, bits in enumerate(_glyph_rows(char)):
                for col in range(_GLYPH_W):
                    if not bits >> (_GLYPH_W - 1 - col) & 1:
                        continue
                    u, v = (n * _ADVANCE + col) * scale, row * scale
                    for a in range(scale):
                        for b in range(scale):
                            if vertical:
                                self.set(x + v + b, y - u - a, colour)
                            else:
                                self.set(x + u + a, y + v + b, colour)


def _nice_ticks(lo: float, hi: float, target: int) -> tuple[list[float], float]:
    """Round tick values inside [lo, hi], 1, 2 or 5 times a power of ten apart, as close to ``target`` of
    them as those steps allow; and the step."""
    magnitude = 10.0 ** math.floor(math.log10((hi - lo) / target))
    best = None
    for step in (m * magnitude for m in (1, 2, 5, 10, 20)):
        first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
        ticks = [k * step for k in range(first, last + 1)]
        if best is None or abs(len(ticks) - target) <= abs(len(best[0]) - target):
            best = ticks, step
    return best


def _tick_labels(values: list[float], step: float) -> list[str]:
    """Labels with just the decimals the step needs; large values shortened with k/M/G (20000 -> 20k)."""
    biggest = max(abs(v) for v in values)
    if step < 1e-4 or biggest >= 1e12:
        return [f"{v:.3g}" for v in values]
    unit, suffix = next(((u, s) for u, s, at in ((1e9, "G", 1e9), (1e6, "M", 1e6), (1e3, "k", 1e4))
                         if biggest >= at), (1, ""))
    decimals = max(0, -math.floor(math.log10(step / unit) + 1e-9))
    labels = []
    for v in values:
        label = f"{v / unit:.{decimals}f}"
        labels.append(f"{0:.{decimals}f}" if float(label) == 0 else label + suffix)  # never "-0.0"
    return labels


def _axis_ticks(lo: float, hi: float, length_px: int, label_px) -> list[tuple[float, str]]:
    """About 5 ticks, fewer where their labels would not fit along ``length_px`` pixels of axis;
    ``label_px(labels)`` is the room one label needs along the axis."""
    for target in (5, 4, 3, 2):
        values, step = _nice_ticks(lo, hi, target)
        labels = _tick_labels(values, step)
        if length_px * step / (hi - lo) >= label_px(labels):
            break
    return list(zip(values, labels))


def _padded_range(values: list[float], fraction: float) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if lo == hi:
        half = abs(lo) * 0.1 or 1.0
        return lo - half, hi + half
    pad = (hi - lo) * fraction
    return lo - pad, hi + pad


def _validate(series, width: int, height: int, y_range) -> dict[str, list[tuple[float, float]]]:
    if width < MIN_SIZE or height < MIN_SIZE:
        raise ValueError(f"chart size {width}x{height} is too small: width and height must be at least {MIN_SIZE}")
    if not isinstance(series, Mapping):
        raise ValueError(f"series must be a dict mapping each legend name to a list of (x, y) points, "
                         f"not {type(series).__name__}")
    if not series:
        raise ValueError("series is empty: pass a dict mapping each legend name to a list of (x, y) points")
    if len(series) > len(PALETTE):
        raise ValueError(f"{len(series)} series given, but only {len(PALETTE)} distinct colours are available")
    clean = {}
    for name, points in series.items():
        points = list(points)
        if not points:
            raise ValueError(f"series {name!r} has no points")
        out = []
        for i, point in enumerate(points):
            try:
                x, y = point
            except (TypeError, ValueError):
                raise ValueError(f"series {name!r}: point {i} is {point!r}, not an (x, y) pair") from None
            for axis, v in (("x", x), ("y", y)):
                if not isinstance(v, numbers.Real) or isinstance(v, bool):
                    raise ValueError(f"series {name!r}: point {i} has {axis}={v!r}, not a number")
                if not math.isfinite(v):
                    raise ValueError(f"series {name!r}: point {i} has a non-finite {axis} value ({v!r})")
            out.append((float(x), float(y)))
        clean[str(name)] = out
    if y_range is not None:
        try:
            lo, hi = map(float, y_range)
        except (TypeError, ValueError):
            lo = hi = math.nan
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"y_range must be two finite numbers (lo, hi) with lo < hi, got {y_range!r}")
    return clean


def line_chart_png(path, series: dict, *, title: str = "", x_label: str = "step", y_label: str = "",
                   width: int = 640, height: int = 400, y_range: tuple[float, float] | None = None) -> Path:
    """Plot each ``series`` (legend name -> list of (x, y) points) as a 2 px polyline with square markers,
    one palette colour per series, and write the chart to ``path`` as a PNG (parent folders created, file
    replaced atomically). ``y_range=(lo, hi)`` fixes the y axis, and y values outside it are pinned to its
    edge; otherwise both axes span the data with a small margin. Returns the path written."""
    data = _validate(series, width, height, y_range)
    xs = [x for points in data.values() for x, _ in points]
    ys = [y for points in data.values() for _, y in points]
    x_lo, x_hi = _padded_range(xs, 0.03)
    y_lo, y_hi = (float(y_range[0]), float(y_range[1])) if y_range is not None else _padded_range(ys, 0.05)
    if not (math.isfinite(x_hi - x_lo) and math.isfinite(y_hi - y_lo)):
        raise ValueError("the data spans too wide a range to plot (the axis length overflows a float)")

    canvas = _Canvas(width, height)
    pad, tick_len, gap = 10, 4, 3

    title_scale = 2 if text_width(title, 2) <= width - 2 * pad else 1
    title_h = (_GLYPH_H * title_scale + 8) if title else 0
    x_label_h = (_GLYPH_H + 6) if x_label else 0
    y_label_w = (_GLYPH_H + 6) if y_label else 0

    top = pad + title_h + _GLYPH_H // 2 + 1
    bottom = height - 1 - pad - x_label_h - _GLYPH_H - gap - tick_len
    y_ticks = _axis_ticks(y_lo, y_hi, bottom - top, lambda labels: _GLYPH_H + 6)
    y_tick_w = max(text_width(label) for _, label in y_ticks)
    left = pad + y_label_w + y_tick_w + gap + tick_len

    # The legend sits right of the plot; long names are cut so that it takes at most a third of the width.
    max_legend_w = max(60, (width - left - pad) // 3)
    max_chars = (max_legend_w - 8 - 14 - 4) // _ADVANCE
    names = [n if len(n) <= max_chars else n[:max_chars - 2] + ".." for n in data]
    legend_w = 8 + 14 + 4 + max(text_width(n) for n in names)
    right = width - 1 - pad - legend_w - 8
    x_ticks = _axis_ticks(x_lo, x_hi, right - left, lambda labels: max(map(text_width, labels)) + 8)

    def to_px(x: float, y: float) -> tuple[int, int]:
        y = min(max(y, y_lo), y_hi)
        return (round(left + (x - x_lo) / (x_hi - x_lo) * (right - left)),
                round(bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)))

    for value, label in y_ticks:
        _, py = to_px(x_lo, value)
        canvas.line(left + 1, py, right - 1, py, GRID)
        canvas.line(left - tick_len, py, left - 1, py, BLACK)
        canvas.text(left - tick_len - gap - text_width(label), py - _GLYPH_H // 2, label, TEXT)
    for value, label in x_ticks:
        px, _ = to_px(value, y_lo)
        canvas.line(px, top + 1, px, bottom - 1, GRID)
        canvas.line(px, bottom + 1, px, bottom + tick_len, BLACK)
        canvas.text(px - text_width(label) // 2, bottom + tick_len + gap, label, TEXT)
    canvas.rect(left, top, right, bottom, BLACK, fill=False)

    if title:
        canvas.text((width - text_width(title, title_scale)) // 2, pad, title, TEXT, scale=title_scale)
    if x_label:
        canvas.text((left + right - text_width(x_label)) // 2, height - 1 - pad - _GLYPH_H + 1, x_label, TEXT)
    if y_label:
        canvas.text(pad, (top + bottom + text_width(y_label)) // 2, y_label, TEXT, vertical=True)

    for colour, points in zip(PALETTE, data.values()):
        pixels = [to_px(x, y) for x, y in points]
        for (x0, y0), (x1, y1) in zip(pixels, pixels[1:]):
            canvas.line(x0, y0, x1, y1, colour, thickness=2)
        for px, py in pixels:
            canvas.rect(px - 2, py - 2, px + 2, py + 2, colour)

    row_h = _GLYPH_H + 6
    lx, ly = width - 1 - pad - legend_w, top
    canvas.rect(lx, ly, lx + legend_w, ly + 6 + row_h * len(names), LEGEND_FRAME, fill=False)
    for i, (colour, name) in enumerate(zip(PALETTE, names)):
        cy = ly + 4 + row_h * i + row_h // 2
        canvas.line(lx + 6, cy, lx + 6 + 14, cy, colour, thickness=2)
        canvas.rect(lx + 11, cy - 2, lx + 15, cy + 2, colour)
        canvas.text(lx + 6 + 14 + 4, cy - _GLYPH_H // 2, name, colour)

    return _write_png(Path(path), width, height, canvas.pixels)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write_png(path: Path, width: int, height: int, pixels: bytearray) -> Path:
    stride = width * 3
    raw = b"".join(b"\x00" + bytes(pixels[y * stride:(y + 1) * stride]) for y in range(height))
    png = (_PNG_SIGNATURE
           + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + _chunk(b"IDAT", zlib.compress(raw, 9))
           + _chunk(b"IEND", b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(png)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_png_rgb(path) -> tuple[int, int, list[list[tuple[int, int, int]]]]:
    """Decode a PNG as this module writes it (8-bit RGB, not interlaced, every row with filter type 0) into
    ``(width, height, rows)``, each row a list of (r, g, b) tuples. Raises ValueError for any other PNG or a
    damaged file."""
    data = Path(path).read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{path}: not a PNG file (bad signature)")
    pos, header, idat, ended = len(_PNG_SIGNATURE), None, [], False
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError(f"{path}: truncated chunk header at byte {pos}")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = data[pos + 8 + length:pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise ValueError(f"{path}: truncated {kind!r} chunk")
        if struct.unpack(">I", crc)[0] != zlib.crc32(kind + body):
            raise ValueError(f"{path}: CRC mismatch in {kind!r} chunk")
        pos += 12 + length
        if header is None and kind != b"IHDR":
            raise ValueError(f"{path}: first chunk is {kind!r}, not IHDR")
        if kind == b"IHDR":
            if length != 13:
                raise ValueError(f"{path}: IHDR has length {length}, not 13")
            header = struct.unpack(">IIBBBBB", body)
            if header[2:] != (8, 2, 0, 0, 0):
                raise ValueError(f"{path}: only 8-bit RGB, non-interlaced PNGs are supported "
                                 f"(bit depth {header[2]}, colour type {header[3]}, interlace {header[6]})")
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            ended = True
            break
    if header is None or not ended:
        raise ValueError(f"{path}: missing {'IHDR' if header is None else 'IEND'} chunk")
    width, height = header[0], header[1]
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise ValueError(f"{path}: image data does not decompress ({e})") from None
    stride = 1 + 3 * width
    if len(raw) != height * stride:
        raise ValueError(f"{path}: image data is {len(raw)} bytes, expected {height * stride}")
    rows = []
    for y in range(height):
        line = raw[y * stride:(y + 1) * stride]
        if line[0] != 0:
            raise ValueError(f"{path}: row {y} uses filter type {line[0]}; only filter type 0 is supported")
        rows.append([tuple(line[i:i + 3]) for i in range(1, stride, 3)])
    return width, height, rows
