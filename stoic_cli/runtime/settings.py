"""What the shipped models need to be run, typed and checked once: stoic.json (sizes, pixel range,
the alignment template the networks were trained on) and attributes.json (the edit directions).

Every default lives here; a missing or malformed file is a one-line error naming it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = 1  # the stoic.json layout this code reads


class SettingsError(ValueError):
    """A model settings file that cannot be used; the message names the file."""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object")
    return data


@dataclass(frozen=True)
class ModelSettings:
    """stoic.json: written by `stoic train export`, read before any model runs."""
    image_size: int = 128  # the encoder's (and decoder's) side
    render_size: int = 256  # the renderer's side
    latent_dim: int = 256
    expression_dims: int = 0  # the code's expression part (its last entries); 0: no split
    pixel_range: tuple[float, float] = (-1.0, 1.0)
    template: tuple[tuple[float, float], ...] | None = None  # the aligner's template at training time
    models: dict = field(default_factory=dict)  # name -> version note, shown by `stoic info`

    @classmethod
    def read(cls, path: Path) -> "ModelSettings":
        """The settings in `path`, or the defaults when the folder has no stoic.json."""
        if not path.exists():
            return cls()
        data = _read_json(path)
        if data.get("format", FORMAT) != FORMAT:
            raise SettingsError(f"{path}: format {data.get('format')!r}; this stoic reads format {FORMAT}")
        try:
            settings = cls(
                image_size=int(data.get("image_size", cls.image_size)),
                render_size=int(data.get("render_size", cls.render_size)),
                latent_dim=int(data.get("latent_dim", cls.latent_dim)),
                expression_dims=int(data.get("expression_dims", cls.expression_dims)),
                pixel_range=tuple(float(v) for v in data.get("pixel_range", cls.pixel_range)),
                template=tuple(tuple(float(v) for v in p) for p in data["template"]) if "template" in data else None,
                models=dict(data.get("models", {})),
            )
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{path}: malformed value ({exc})") from None
        settings.check(path)
        return settings

    def check(self, path: Path) -> None:
        from stoic_cli.face.alignment import TEMPLATE

        for name in ("image_size", "render_size", "latent_dim"):
            if not 1 <= getattr(self, name) <= 8192:
                raise SettingsError(f"{path}: {name} {getattr(self, name)} is out of range")
        if not 0 <= self.expression_dims < self.latent_dim:
            raise SettingsError(f"{path}: expression_dims {self.expression_dims} is outside 0..{self.latent_dim - 1}")
        if self.pixel_range != (-1.0, 1.0):
            raise SettingsError(f"{path}: pixel_range {list(self.pixel_range)}; the networks read [-1, 1]")
        if self.template is not None and (np.shape(self.template) != TEMPLATE.shape
                                          or not np.allclose(self.template, TEMPLATE, atol=1e-6)):
            raise SettingsError(f"{path}: the models were trained on another alignment template than this "
                                "stoic's aligner uses")


@dataclass(frozen=True)
class Attribute:
    """One edit direction of attributes.json: `direction` is the latent change for one `unit`;
    amounts are documented (and kept) within minimum..maximum."""
    name: str
    direction: np.ndarray
    minimum: float
    maximum: float
    unit: str = ""
    help: str = ""
    kind: str = ""  # "expression" (smile, surprise, ...) or "appearance" (age, gender)


def read_attributes(path: Path, latent_dim: int | None = None) -> dict[str, Attribute]:
    """attributes.json's directions by name (the one reader of that file)."""
    data = _read_json(path)
    out = {}
    try:
        for name, d in data.get("attributes", {}).items():
            a = Attribute(name=name, direction=np.asarray(d["direction"], np.float32), minimum=float(d["min"]),
                          maximum=float(d["max"]), unit=d.get("unit", ""), help=d.get("help", ""),
                          kind=d.get("kind", ""))
            if a.direction.ndim != 1 or (latent_dim and a.direction.shape[0] != latent_dim):
                raise ValueError(f"{name}: direction of shape {a.direction.shape}")
            out[name] = a
    except (KeyError, TypeError, ValueError) as exc:
        raise SettingsError(f"{path}: malformed attribute ({exc})") from None
    return out
