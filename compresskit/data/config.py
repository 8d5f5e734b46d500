"""Which dataset, with which options: the ``data`` block of training configs, recipes and model metadata."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

# what ``compresskit eval`` and a run's input use when a model's metadata names no dataset
DEFAULT_DATA = {"emoji": {"name": "emoji", "size": 32, "styles": ["twemoji", "openmoji"]},
                "shapes": {"name": "shapes", "size": 32, "n": 10_000, "seed": 0, "max_objects": 2}}


class DataConfig(BaseModel):
    """A dataset name and its build options, validated strictly (an unknown key is an error)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["emoji", "shapes"] = "emoji"
    size: int = 32
    styles: list[str] | None = None  # emoji: None = every installed style
    n: int = 10_000  # shapes only
    seed: int = 0  # shapes only
    max_objects: int = 2  # shapes only
    limit: int | None = None  # emoji: first N emoji only (tiny configs)

    def build_options(self) -> dict:
        """The keyword options of ``load_dataset(self.name, ...)``: only those this dataset reads."""
        if self.name == "emoji":
            return {"size": self.size, "styles": self.styles, "limit": self.limit}
        return {"n": self.n, "size": self.size, "seed": self.seed, "max_objects": self.max_objects}
