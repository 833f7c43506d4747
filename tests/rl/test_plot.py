"""Tests for rl/plot.py: a valid PNG on disk, pixels where the data says, the font, and input validation."""
from __future__ import annotations

import math
import string
import struct
import zlib

import pytest

from rl import plot
from rl.plot import BLACK, PALETTE, WHITE, line_chart_png, read_png_rgb

SIGNATURE = b"\x89PNG\r\n\x1a\n"
RAMP = [(float(s), s / 100) for s in range(0, 101, 10)]


def chunks(data: bytes) -> list[tuple[bytes, bytes, int]]:
    """(type, body, stored CRC) for every chunk after the signature."""
    out, pos = [], len(SIGNATURE)
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        out.append((kind, body, crc))
        pos += 12 + length
    return out


def make_png(width: int, height: int, rows: list[bytes], *, colour_type: int = 2) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def render(tmp_path, series, name="chart.png", **kwargs):
    kwargs.setdefault("width", 320)
    kwargs.setdefault("height", 240)
    path = line_chart_png(tmp_path / name, series, **kwargs)
    return read_png_rgb(path)


def frame(rows) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the plot area's black frame: the rows and columns mostly black."""
    height, width = len(rows), len(rows[0])
    ys = [y for y in range(height) if sum(p == BLACK for p in rows[y]) > width / 3]
    xs = [x for x in range(width) if sum(rows[y][x] == BLACK for y in range(height)) > height / 3]
    return xs[0], ys[0], xs[-1], ys[-1]


def pixels_of(rows, colour, box=None) -> list[tuple[int, int]]:
    left, top, right, bottom = box or (0, 0, len(rows[0]) - 1, len(rows) - 1)
    return [(x, y) for y in range(top, bottom + 1) for x in range(left, right + 1) if rows[y][x] == colour]


def centroid_y(points) -> float:
    return sum(y for _, y in points) / len(points)


def test_file_is_a_valid_rgb_png_with_correct_crcs(tmp_path):
    path = line_chart_png(tmp_path / "c.png", {"reward": RAMP}, width=300, height=210)
    assert path == tmp_path / "c.png"
    data = path.read_bytes()
    assert data.startswith(SIGNATURE)
    found = chunks(data)
    assert [kind for kind, _, _ in found][0] == b"IHDR" and found[-1][0] == b"IEND"
    assert b"IDAT" in [kind for kind, _, _ in found]
    for kind, body, crc in found:
        assert zlib.crc32(kind + body) == crc, kind
    assert struct.unpack(">IIBBBBB", found[0][1]) == (300, 210, 8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body, _ in found if kind == b"IDAT"))
    stride = 1 + 3 * 300
    assert len(raw) == 210 * stride
    assert all(raw[y * stride] == 0 for y in range(210))
    width, height, rows = read_png_rgb(path)
    assert (width, height, len(rows), len(rows[0])) == (300, 210, 210, 300)


def test_background_white_and_every_series_in_its_own_colour(tmp_path):
    series = {"reward": RAMP, "accuracy": [(x, 1 - y) for x, y in RAMP], "kl": [(x, 0.5) for x, _ in RAMP]}
    _, _, rows = render(tmp_path, series)
    for x, y in [(0, 0), (319, 0), (0, 239), (319, 239)]:
        assert rows[y][x] == WHITE
    assert sum(p == WHITE for row in rows for p in row) > 0.6 * 320 * 240
    box = frame(rows)
    for colour in PALETTE[:3]:
        assert len(pixels_of(rows, colour, box)) > 150, colour
    assert not pixels_of(rows, PALETTE[3])


def test_vertical_position_follows_y(tmp_path):
    series = {"high": [(x, 0.9 + y / 10) for x, y in RAMP], "low": [(x, y / 10) for x, y in RAMP]}
    _, _, rows = render(tmp_path, series)
    left, top, right, bottom = box = frame(rows)
    middle = (top + bottom) / 2
    high, low = pixels_of(rows, PALETTE[0], box), pixels_of(rows, PALETTE[1], box)
    assert centroid_y(high) < top + (bottom - top) * 0.2
    assert centroid_y(low) > top + (bottom - top) * 0.8
    assert max(y for _, y in high) < middle < min(y for _, y in low)


def test_horizontal_position_follows_x(tmp_path):
    _, _, rows = render(tmp_path, {"rising": RAMP})
    left, top, right, bottom = box = frame(rows)
    points = pixels_of(rows, PALETTE[0], box)
    middle = (left + right) / 2
    left_half = [p for p in points if p[0] < middle]
    right_half = [p for p in points if p[0] >= middle]
    assert centroid_y(left_half) > centroid_y(right_half) + (bottom - top) / 3


def test_y_range_fixes_the_axis_and_pins_values_outside_it(tmp_path):
    _, _, rows = render(tmp_path, {"acc": [(x, 0.4 + y / 5) for x, y in RAMP]}, y_range=(0, 1))
    left, top, right, bottom = box = frame(rows)
    ys = [y for _, y in pixels_of(rows, PALETTE[0], box)]
    span = bottom - top
    assert top + 0.35 * span < min(ys) and max(ys) < top + 0.65 * span

    _, _, rows = render(tmp_path, {"acc": [(0.0, 5.0), (1.0, 5.0), (2.0, -3.0)]}, y_range=(0, 1))
    left, top, right, bottom = frame(rows)
    points = pixels_of(rows, PALETTE[0], (left, 0, right, len(rows) - 1))
    assert points and all(top - 3 <= y <= bottom + 3 for _, y in points)
    assert any(abs(y - top) <= 2 for _, y in points) and any(abs(y - bottom) <= 2 for _, y in points)


def test_title_draws_dark_pixels_in_the_top_band(tmp_path):
    def dark_above_plot(title):
        _, _, rows = render(tmp_path, {"reward": RAMP}, title=title)
        _, top, _, _ = frame(rows)
        return sum(sum(p) < 200 for row in rows[:top - 5] for p in row[80:240])
    assert dark_above_plot("Reward") > 40
    assert dark_above_plot("") == 0


def test_axis_labels_and_tick_labels_draw_text(tmp_path):
    _, _, rows = render(tmp_path, {"reward": RAMP}, x_label="step", y_label="reward")
    left, top, right, bottom = frame(rows)
    below = sum(sum(p) < 200 and p != BLACK for row in rows[bottom + 1:] for p in row)
    beside = sum(sum(p) < 200 and p != BLACK for row in rows for p in row[:left])
    assert below > 60 and beside > 60


def test_single_point_series_draws_a_marker(tmp_path):
    _, _, rows = render(tmp_path, {"first eval": [(5.0, 0.3)]})
    assert len(pixels_of(rows, PALETTE[0], frame(rows))) >= 25


def test_writes_into_nested_new_directory_without_leaving_temp_files(tmp_path):
    target = tmp_path / "a" / "b" / "plots" / "reward.png"
    line_chart_png(target, {"reward": RAMP})
    line_chart_png(str(target), {"reward": RAMP[:3]})  # overwrite in place, str path
    assert sorted(p.name for p in target.parent.iterdir()) == ["reward.png"]
    assert read_png_rgb(target)[:2] == (640, 400)


def test_failed_write_removes_temp_file_and_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "reward.png"
    target.write_bytes(b"old")

    def fail(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(plot.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        line_chart_png(target, {"reward": RAMP})
    assert [p.name for p in tmp_path.iterdir()] == ["reward.png"] and target.read_bytes() == b"old"


@pytest.mark.parametrize("series, kwargs, message", [
    ({}, {}, "empty"),
    ([("x", 1)], {}, "dict"),
    ({"acc": []}, {}, "'acc' has no points"),
    ({"ok": RAMP, "reward": [(0, 1.0), (1, math.nan)]}, {}, "'reward'.*non-finite y"),
    ({"reward": [(math.inf, 1.0)]}, {}, "'reward'.*non-finite x"),
    ({"reward": [(0, "1")]}, {}, "'reward'.*not a number"),
    ({"reward": [(0, 1, 2)]}, {}, r"'reward'.*not an \(x, y\) pair"),
    ({"reward": RAMP}, {"width": 199}, "too small"),
    ({"reward": RAMP}, {"height": 100}, "too small"),
    ({"reward": RAMP}, {"y_range": (1, 0)}, "y_range"),
    ({"reward": RAMP}, {"y_range": (0, math.nan)}, "y_range"),
    ({f"s{i}": RAMP for i in range(len(PALETTE) + 1)}, {}, "distinct colours"),
])
def test_invalid_input_raises_value_error(tmp_path, series, kwargs, message):
    with pytest.raises(ValueError, match=message):
        line_chart_png(tmp_path / "c.png", series, **kwargs)
    assert not list(tmp_path.iterdir())


def test_font_covers_the_required_characters():
    required = string.digits + string.ascii_letters + " .,:;-+_/()%=<>[]'"
    box = plot._glyph_rows("\u00e9")
    assert box == [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F]
    for char in required:
        rows = plot._glyph_rows(char)
        assert len(rows) == 7 and all(0 <= r < 32 for r in rows), char
        assert char in plot._GLYPHS and (any(rows) or char == " "), char
    assert len({tuple(plot._glyph_rows(c)) for c in required}) == len(required)  # all distinct


def test_unknown_characters_render_as_boxes(tmp_path):
    def dark_pixels(title):
        _, _, rows = render(tmp_path, {"r": RAMP}, title=title)
        _, top, _, _ = frame(rows)
        return sum(sum(p) < 200 for row in rows[:top - 5] for p in row)
    assert dark_pixels("\u00e9\u00e9") == 2 * 20 * 4  # two 5x7 outlines (20 pixels each) at scale 2


def test_read_png_rgb_rejects_other_pngs(tmp_path):
    good = make_png(2, 1, [b"\x00" + bytes([255, 0, 0, 0, 0, 255])])
    (tmp_path / "good.png").write_bytes(good)
    assert read_png_rgb(tmp_path / "good.png") == (2, 1, [[(255, 0, 0), (0, 0, 255)]])

    cases = {
        "signature": b"GIF89a" + good[6:],
        "CRC": good[:-5] + bytes([good[-5] ^ 1]) + good[-4:],
        "filter type 1": make_png(2, 1, [b"\x01" + bytes(6)]),
        "8-bit RGB": make_png(1, 1, [b"\x00" + bytes(4)], colour_type=6),
        "expected": make_png(2, 2, [b"\x00" + bytes(6)]),
        "IEND": good[:-12],
    }
    for message, data in cases.items():
        (tmp_path / "bad.png").write_bytes(data)
        with pytest.raises(ValueError, match=message):
            read_png_rgb(tmp_path / "bad.png")
