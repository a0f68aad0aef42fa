"""Image tokens of a LLaVA-OneVision checkpoint: AnyRes tiling as configuration, and how many image tokens each
example takes, agreed by every stage that puts images in front of the model.

LLaVA-OneVision's processor tiles an image over the best of its `image_grid_pinpoints` (resolutions in pixels,
multiples of the vision tower's tile size), adds the whole image downscaled as a base tile, and expands each
image token of the prompt into that many features (`_get_number_of_features`). The model computes the same
layout from its own config's `image_grid_pinpoints`, so both are set together (`apply_tiling`) and saved with
every checkpoint compass writes.

`vision.tiling` chooses the grid: `image_grid_pinpoints` as given, or `max_tiles` (every grid of rows x columns
tiles with rows * columns <= max_tiles, InternVL-style as LLM-jp-4-VL tiles), or neither (the checkpoint's own).

The count of an example's image tokens is worked out once from its images' sizes (`image_token_count`) and
checked wherever the prompt is expanded: in training (each collated batch), in generation (each encoded
prompt). A mismatch stops the stage naming the example. An example whose image tokens would not fit in
`max_length` is dropped and counted (`fits`), never truncated inside its image.
"""

from __future__ import annotations

from compass.io import CompassError


def tile_size(processor) -> int:
    size = processor.image_processor.size  # a SizeDict (transformers 5) or a dict
    get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
    return int(get("height") or get("shortest_edge"))


def pinpoints(tiling: dict, tile: int) -> list[list[int]] | None:
    """The grid pinpoints `vision.tiling` asks for (None: keep the checkpoint's)."""
    grid, max_tiles = tiling.get("image_grid_pinpoints"), tiling.get("max_tiles")
    if grid and max_tiles:
        raise CompassError("vision.tiling: give image_grid_pinpoints or max_tiles, not both")
    if grid:
        bad = [p for p in grid if len(p) != 2 or p[0] % tile or p[1] % tile]
        if bad:
            raise CompassError(f"vision.tiling.image_grid_pinpoints: {bad[0]} is not [height, width] in multiples of "
                               f"the vision tower's {tile}-pixel tile")
        return [list(map(int, p)) for p in grid]
    if max_tiles:
        return [[r * tile, c * tile] for r in range(1, max_tiles + 1) for c in range(1, max_tiles + 1)
                if r * c <= max_tiles]
    return None


def apply_tiling(processor, model_config, tiling: dict | None) -> list[list[int]]:
    """Set the configured pinpoints on the processor and the model config (they must agree: the processor cuts
    the tiles, the model lays their features out); return the pinpoints in force."""
    grid = pinpoints(tiling or {}, tile_size(processor))
    if grid is not None:
        processor.image_processor.image_grid_pinpoints = grid
        if model_config is not None:
            model_config.image_grid_pinpoints = grid
    grid = [list(p) for p in processor.image_processor.image_grid_pinpoints]
    if model_config is not None and [list(p) for p in model_config.image_grid_pinpoints] != grid:
        raise CompassError(f"image_grid_pinpoints of the processor ({grid}) and the model config "
                           f"({model_config.image_grid_pinpoints}) differ: the checkpoint would misplace image features")
    return grid


def image_token_id(processor) -> int:
    return processor.tokenizer.convert_tokens_to_ids(processor.image_token)


def image_token_count(processor, sizes: list[tuple[int, int]]) -> int:
    """Image tokens the processor expands one example's images into, from their (width, height): a single image
    is tiled (AnyRes: its tiles, the base tile and row ends); several images of one example take one tile each
    (plus a row end), as LLaVA-OneVision's processor and model lay them out."""
    if not sizes:
        return 0
    tile = tile_size(processor)
    if len(sizes) == 1:
        (width, height), = sizes
        per_image = [processor._get_number_of_features(height, width, tile, tile)]
    else:
        per_image = [processor.num_image_tokens + 1] * len(sizes)
    drop_cls = 1 if processor.vision_feature_select_strategy == "default" else 0
    return sum(n - drop_cls for n in per_image)


def example_image_tokens(processor, images) -> int:
    """Image tokens of one example's images (PIL images, or anything with .size)."""
    return image_token_count(processor, [tuple(im.size) for im in images])


def prompt_ids(processor, messages: list[dict], chat_cfg: dict) -> list[int]:
    """The example's prompt as token ids before the image tokens are expanded (one image token per image)."""
    from compass import chat

    text = chat.render(processor, messages, chat_cfg)
    return processor.tokenizer(text, add_special_tokens=False).input_ids


def image_span_end(ids: list[int], image_id: int, n_tokens: int) -> int:
    """Length of the expanded prompt up to the end of its last image's tokens (0 without images)."""
    places = [i for i, t in enumerate(ids) if t == image_id]
    if not places:
        return 0
    return places[-1] + 1 - len(places) + n_tokens


def check_counts(input_ids, expected: list[int], ids: list, image_id: int, where: str) -> None:
    """Each row of `input_ids` (a batch) holds exactly its example's expected number of image tokens."""
    got = (input_ids == image_id).sum(dim=1).tolist()
    for example_id, want, have in zip(ids, expected, got):
        if want != have:
            raise CompassError(f"example {example_id!r}: {have} image tokens in {where}, {want} expected from its "
                               "images and the tiling (prepared with another processor or tiling, or cut short)")
