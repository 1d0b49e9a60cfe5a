"""Top-down pictures of an ArenaWorld with PIL only (no pygame window), and GIFs of episodes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .world import ROLE_COLOURS, TYPE_COLOURS, ArenaWorld

BACKGROUND = (255, 255, 255)
WALL = (40, 40, 40)
PREY_VIEW = (255, 228, 228)  # faint red disc: what the prey can see
MARGIN_FRACTION = 0.04


def _rgb(colour: Sequence[float]) -> tuple[int, int, int]:
    return tuple(int(round(255 * c)) for c in colour)  # type: ignore[return-value]


def _entity_colour(entity: object) -> tuple[int, int, int]:
    role = getattr(entity, "role", None)
    if role in ROLE_COLOURS:
        return _rgb(ROLE_COLOURS[role])
    type_index = getattr(entity, "type", None)
    if type_index is not None:
        return _rgb(TYPE_COLOURS[type_index % len(TYPE_COLOURS)])
    return (128, 128, 128)


def draw_world(world: ArenaWorld, size_px: int = 400) -> Image.Image:
    """A size_px x size_px RGB picture: arena square, hollow foods, filled agents, prey views."""
    image = Image.new("RGB", (size_px, size_px), BACKGROUND)
    draw = ImageDraw.Draw(image)
    margin = MARGIN_FRACTION * size_px
    scale = (size_px - 2 * margin) / (2 * world.bound)

    def to_px(pos: np.ndarray) -> tuple[float, float]:
        # y up in the world, down in the image
        return margin + (pos[0] + world.bound) * scale, margin + (world.bound - pos[1]) * scale

    def circle(pos: np.ndarray, radius: float, **style: object) -> None:
        x, y = to_px(pos)
        r = max(radius * scale, 1.0)
        draw.ellipse([x - r, y - r, x + r, y + r], **style)

    # underneath everything, so the view discs never hide an agent
    for entity in world.scripted:
        view_radius = getattr(entity, "view_radius", None)
        if view_radius is not None:
            circle(entity.state.p_pos, view_radius, fill=PREY_VIEW)
    draw.rectangle([margin, margin, size_px - margin, size_px - margin], outline=WALL, width=2)
    for landmark in world.landmarks:
        circle(landmark.state.p_pos, landmark.size, outline=_entity_colour(landmark), width=3)
    for mover in world.movers:
        circle(mover.state.p_pos, mover.size, fill=_entity_colour(mover), outline=(0, 0, 0))
    return image


def save_gif(frames: Sequence[Image.Image | np.ndarray], path: str | Path, fps: int = 10) -> None:
    """Write frames (PIL images or HxWx3 uint8 arrays) as a looping GIF."""
    assert len(frames) > 0, "a GIF needs at least one frame"
    images = [f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f)) for f in frames]
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=max(int(round(1000 / fps)), 1),
        loop=0,
    )
