"""What a job asks of an embedded board (the spec's `board:`): an image to flash first, and
whether to power-cycle before the command. Boards are driven by the labgrid executor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gpufleet.domain.errors import ValidationError

BOARD_KEYS = ("image", "flash", "power_cycle")


@dataclass(frozen=True, slots=True)
class BoardPolicy:
    image: str | None = None  # the image the farm's flashing strategy writes (a path or name it knows)
    flash: bool = False  # flash `image` before the command
    power_cycle: bool | None = None  # None: the farm's default

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "flash": self.flash, "power_cycle": self.power_cycle}

    # the runner reads the policy as a mapping
    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None) if key in BOARD_KEYS else None
        return default if value is None else value

    def keys(self):
        return [k for k in BOARD_KEYS if getattr(self, k) is not None]

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


def parse_board(value: Any) -> BoardPolicy | None:
    """`board: {image: ..., flash: true, power_cycle: true}` -> BoardPolicy; names board.<key>."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError("board", "must be a mapping: {image: ..., flash: true, power_cycle: true}")
    for key in value:
        if key not in BOARD_KEYS:
            raise ValidationError(f"board.{key}", f"unknown field (known: {', '.join(BOARD_KEYS)})")
    image = value.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip() or "\0" in image or "\n" in image):
        raise ValidationError("board.image", "must be a non-empty image path or name")
    for key in ("flash", "power_cycle"):
        if value.get(key) is not None and not isinstance(value[key], bool):
            raise ValidationError(f"board.{key}", "must be true or false")
    flash = bool(value.get("flash", False))
    if flash and not image:
        raise ValidationError("board.image", "board.flash needs an image")
    return BoardPolicy(image=image, flash=flash, power_cycle=value.get("power_cycle"))


def board_from_dict(d: Mapping[str, Any] | None) -> BoardPolicy | None:
    """The stored form back (trusted)."""
    if not d:
        return None
    return BoardPolicy(image=d.get("image"), flash=bool(d.get("flash")), power_cycle=d.get("power_cycle"))
