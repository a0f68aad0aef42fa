"""Image files of a run's data: the edge where image rows get their files (compass.images' contract).

Loaders (compass.data.sources, compass.eval.tasks) and the chart generator hand over rows with a
transient ``"image"``: the encoded bytes (a Hub dataset's image column, a rendered chart) or the
path of a local file (ChartQA's ``png/`` directory). `store_images` writes each image once under a
directory being built (content-addressed: ``{pixel digest}{ext}``, so a picture shared by several
questions is one file), and returns the rows with ``"images": ["{prefix}/{name}"]`` (relative to
the JSONL that will hold them) and ``"image_digests"``: the SHA-256 of the decoded pixels, which
dedupe and decontamination compare (the same picture re-encoded is still the same picture).
"""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

from compass.io import CompassError

EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}


def pixel_digest(image) -> str:
    """SHA-256 of an image's RGB pixels and size (independent of the file format and its metadata)."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).hexdigest()


def open_image(ref, where: str = ""):
    """A PIL image from bytes or a path (fully loaded; the file is closed)."""
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(ref, (bytes, bytearray)):
            im = Image.open(io.BytesIO(ref))
        else:
            im = Image.open(ref)
        im.load()
        return im
    except (OSError, UnidentifiedImageError) as e:
        shown = f"{len(ref)} bytes" if isinstance(ref, (bytes, bytearray)) else str(ref)
        raise CompassError(f"{where}: not a readable image ({shown}: {e})") from None


def digest_of(ref, where: str = "") -> tuple[str, str]:
    """(pixel digest, file extension) of an image given as bytes or a path."""
    im = open_image(ref, where)
    ext = EXTENSIONS.get(im.format or "", Path(str(ref)).suffix.lower() if not isinstance(ref, (bytes, bytearray)) else ".png")
    return pixel_digest(im), ext or ".png"


def store_images(rows: list[dict], out_dir, prefix: str) -> list[dict]:
    """Rows with their transient ``image`` written under `out_dir` (as ``{digest}{ext}``) and referenced as
    ``{prefix}/{name}`` in ``images``, with ``image_digests``; rows without ``image`` are returned as they are."""
    out_dir = Path(out_dir)
    written: dict[str, str] = {}
    result = []
    for row in rows:
        if "image" not in row:
            result.append(row)
            continue
        row = dict(row)
        ref = row.pop("image")
        where = f"row {row.get('id')!r}"
        digest, ext = digest_of(ref, where)
        name = written.get(digest)
        if name is None:
            name = f"{digest[:32]}{ext}"
            out_dir.mkdir(parents=True, exist_ok=True)
            if isinstance(ref, (bytes, bytearray)):
                (out_dir / name).write_bytes(bytes(ref))
            else:
                shutil.copyfile(ref, out_dir / name)
            written[digest] = name
        row["images"] = [f"{prefix}/{name}"]
        row["image_digests"] = [digest]
        result.append(row)
    return result


def remove_unreferenced(rows: list[dict], out_dir, prefix: str) -> int:
    """Delete the files under `out_dir` that no row's ``images`` names (rows dropped by dedupe or
    decontamination); how many were deleted."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return 0
    keep = {p.removeprefix(prefix + "/") for r in rows for p in r.get("images") or [] if p.startswith(prefix + "/")}
    gone = 0
    for p in out_dir.iterdir():
        if p.is_file() and p.name not in keep:
            p.unlink()
            gone += 1
    return gone
