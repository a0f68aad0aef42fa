"""Images of a row: one contract for every stage that reads image-grounded examples.

A row (prompt, trace, DPO pair, RL prompt, evaluation item) that comes with images carries
`"images": [path, ...]`, in the order of the image parts of its user message. A relative path is
relative to the directory of the JSONL file that holds the row, so a data directory moves as one;
an absolute path is used as it is. Rows without the key (or with an empty list) are text-only.
The user message of an image row puts one `{"type": "image"}` part per image before the text
(`compass.trace_format.prompt_messages(..., n_images=)`).
"""

from __future__ import annotations

from pathlib import Path

from compass.io import CompassError


def image_paths(row: dict, base_dir) -> list[Path]:
    """The row's image files, resolved against `base_dir` (the directory of its JSONL file)."""
    paths = row.get("images") or []
    if isinstance(paths, str) or not isinstance(paths, list):
        raise CompassError(f"row {row.get('id')!r}: `images` must be a list of paths, got {type(paths).__name__}")
    base = Path(base_dir)
    return [p if p.is_absolute() else base / p for p in map(Path, paths)]


def _existing(row: dict, base_dir) -> list[Path]:
    paths = image_paths(row, base_dir)
    for p in paths:
        if not p.is_file():
            raise CompassError(f"row {row.get('id')!r}: image {p} not found")
    return paths


def load_images(row: dict, base_dir) -> list:
    """The row's images as RGB PIL images (an error names the row and the missing file)."""
    from PIL import Image

    out = []
    for p in _existing(row, base_dir):
        with Image.open(p) as im:
            out.append(im.convert("RGB"))
    return out


def image_sizes(row: dict, base_dir) -> list[tuple[int, int]]:
    """(width, height) of each of the row's images (only the headers are read)."""
    from PIL import Image

    sizes = []
    for p in _existing(row, base_dir):
        with Image.open(p) as im:
            sizes.append(im.size)
    return sizes


def blank_like(image, color=(255, 255, 255)):
    """An image of the same size as `image`, one colour: the grounding check's stand-in for the chart."""
    from PIL import Image

    return Image.new("RGB", image.size, color)


def rebase(row: dict, from_dir, to_dir) -> dict:
    """The row with its relative image paths rewritten for a JSONL in `to_dir` (the row was read from a JSONL in
    `from_dir`): what a stage does when it writes rows it read into another directory. Absolute paths stay."""
    import os

    paths = row.get("images")
    if not paths:
        return row
    base = Path(from_dir)
    new = [p if Path(p).is_absolute() else Path(os.path.relpath(base / p, to_dir)).as_posix() for p in paths]
    return {**row, "images": new}
