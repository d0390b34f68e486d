"""Contact sheets: the Slow and Fast clips of one sample, de-normalised, as one PNG with frame numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TILE = 112  # tile size in pixels (clips are shown downscaled to keep the sheets small)
PER_ROW = 8  # Fast frames per row
LABEL_H = 12


def denormalise(clip: np.ndarray, cfg, kind: str = "rgb") -> np.ndarray:
    """C,T,H,W normalised model input -> T,H,W,3 uint8 for display (1-channel inputs as gray)."""
    c = clip.shape[0]
    if kind == "time_diff":  # differences of normalised luma: mid-gray is "no change"
        img = 128.0 + clip[0] * cfg.std[0] * 255.0
        img = np.repeat(img[..., None], 3, axis=-1)
    elif c == 1:
        img = (clip[0] * cfg.std[0] + cfg.mean[0]) * 255.0
        img = np.repeat(img[..., None], 3, axis=-1)
    else:
        std = np.asarray(cfg.std, dtype=np.float32).reshape(3, 1, 1, 1)
        mean = np.asarray(cfg.mean, dtype=np.float32).reshape(3, 1, 1, 1)
        img = ((clip[:3] * std + mean) * 255.0).transpose(1, 2, 3, 0)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _tiles(frames: np.ndarray, numbers, caption: str, draw_font):
    from PIL import Image, ImageDraw  # lazy: Pillow, optional (extra [data])

    tiles = []
    for f, num in zip(frames, numbers):
        im = Image.fromarray(f)
        scale = TILE / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
        tile = Image.new("RGB", (TILE, TILE + LABEL_H), (24, 24, 24))
        tile.paste(im, ((TILE - im.width) // 2, LABEL_H + (TILE - im.height) // 2))
        ImageDraw.Draw(tile).text((2, 0), f"{caption}{int(num)}", fill=(230, 230, 230), font=draw_font)
        tiles.append(tile)
    return tiles


def _rows(tiles: list) -> list[list]:
    return [tiles[i : i + PER_ROW] for i in range(0, len(tiles), PER_ROW)]


def contact_sheet(path: str | Path, title: str, cfg, slow: np.ndarray | None, fast: np.ndarray | None, slow_idx, fast_idx) -> Path:
    """Write a PNG: for each view, a row of Slow frames, then the Fast frames in rows of 8; returns the path."""
    from PIL import Image, ImageDraw, ImageFont  # lazy: Pillow, optional (extra [data])

    font = ImageFont.load_default()
    views = (slow if slow is not None else fast).shape[0]
    blocks = []  # (heading, tiles per row)
    for v in range(views):
        crop = f" view {v}" if views > 1 else ""
        if slow is not None:
            tiles = _tiles(denormalise(slow[v], cfg), slow_idx, "s", font)
            blocks.append((f"Slow{crop}: {len(slow_idx)} frames", _rows(tiles)))
        if fast is not None:
            tiles = _tiles(denormalise(fast[v], cfg, cfg.fast_input), fast_idx, "f", font)
            blocks.append((f"Fast{crop}: {len(fast_idx)} frames ({cfg.fast_input})", _rows(tiles)))
    th = TILE + LABEL_H
    width = PER_ROW * TILE + 2 * 4
    height = 20 + sum(16 + len(rows) * th for _, rows in blocks) + 4
    sheet = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), title, fill=(255, 255, 255), font=font)
    y = 20
    for heading, rows in blocks:
        draw.text((4, y + 2), heading, fill=(255, 220, 120), font=font)
        y += 16
        for row in rows:
            for i, tile in enumerate(row):
                sheet.paste(tile, (4 + i * TILE, y))
            y += th
    path = Path(path)
    sheet.save(path)
    return path
