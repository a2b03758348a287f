"""The registered model variants: named overrides of SHMambaConfig (timm style), never copies of code.

``shmamba`` is the full model; every other variant changes one switch for an ablation.
"""
from __future__ import annotations

import dataclasses

from .config import ModelConfigError, SHMambaConfig

# The switches that tell variants apart.
SWITCHES = ("geometry", "curvature", "features", "temporal", "fusion", "mamba_weights")

VARIANTS: dict[str, dict] = {
    "shmamba": {},
    "euclidean": {"geometry": "euclidean"},
    "fixed-curvature": {"curvature": "fixed"},
    "hyperbolic-features": {"features": "ball"},
    "transformer": {"temporal": "transformer"},
    "no-temporal": {"temporal": "none"},
    "concat-fusion": {"fusion": "concat"},
    "per-modality-mamba": {"mamba_weights": "per-modality"},
}

DEFAULT_VARIANT = "shmamba"


def variant_config(name: str, **overrides) -> SHMambaConfig:
    """The config of variant ``name`` with ``overrides`` (any SHMambaConfig field) applied."""
    if name not in VARIANTS:
        raise ModelConfigError(f"unknown model variant {name!r}; known variants: {sorted(VARIANTS)}")
    fields = {f.name for f in dataclasses.fields(SHMambaConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ModelConfigError(f"variant {name!r}: unknown SHMambaConfig field(s) {unknown}; "
                         f"known: {sorted(fields)}")
    return SHMambaConfig(**{**VARIANTS[name], **overrides})


def _switches(cfg: SHMambaConfig) -> dict:
    values = {k: getattr(cfg, k) for k in SWITCHES}
    if cfg.geometry == "euclidean":  # no curvature at all: the curvature switch means nothing
        values["curvature"] = None
    return values


def variant_name(cfg: SHMambaConfig) -> str:
    """The registered variant whose switches ``cfg`` has, else ``"custom"``.

    Only the ablation switches count (dims, widths and runtime fields may differ).
    """
    have = _switches(cfg)
    for name, overrides in VARIANTS.items():
        if _switches(SHMambaConfig(**overrides)) == have:
            return name
    return "custom"
