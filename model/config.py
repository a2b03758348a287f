"""SHMambaConfig: every architectural switch of the model in one typed dataclass.

The input dimensions (``audio_dim``, ``visual_dim``, ``text_dim``, ``n_answers``, ``n_options``)
come from the feature store; everything else is a model choice.  The ablation variants in
``model.variants`` are nothing but overrides of these fields.

The dataclass is plain data (no torch), so ``common.config`` can fill it from a TOML/YAML file
and command-line overrides, and ``Literal`` fields are checked there as well as here.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

Geometry = Literal["hyperbolic", "euclidean"]
Curvature = Literal["adaptive", "fixed"]
Temporal = Literal["mamba", "transformer", "none"]
Fusion = Literal["cross", "concat"]
TemporalWeights = Literal["shared", "per-modality"]
Backend = Literal["auto", "triton", "mamba-ssm", "mambapy"]
Features = Literal["tangent", "ball"]

_CHOICES = {
    "geometry": ("hyperbolic", "euclidean"),
    "curvature": ("adaptive", "fixed"),
    "features": ("tangent", "ball"),
    "temporal": ("mamba", "transformer", "none"),
    "fusion": ("cross", "concat"),
    "mamba_weights": ("shared", "per-modality"),
    "backend": ("auto", "triton", "mamba-ssm", "mambapy"),
}

# Fields that do not change which weights exist or what they compute: a checkpoint trained with
# one value loads into a model with another (the Mamba backends share one parameter layout).
RUNTIME_FIELDS = ("backend", "dropout", "align_temperature")



class ModelConfigError(ValueError):
    """A model configuration, variant or checkpoint that does not fit; the message says why."""

@dataclass
class SHMambaConfig:
    """Architecture of one SHMamba model.  Every field has a default; dims come from the store."""

    # --- inputs (from the store) ---
    audio_dim: int = 128          #: per-second audio embedding size (VGGish: 128)
    visual_dim: int = 512         #: per-frame visual embedding size (CLIP ViT-B/32: 512)
    text_dim: int = 512           #: sentence / token / option embedding size (CLIP text)
    n_answers: int = 42           #: answer vocabulary size (0: no classifier, options only)
    n_options: int = 0            #: >0: multiple choice with this many options per question
    use_tokens: bool = False      #: also attend over the question's token embeddings
    # --- width and temporal blocks ---
    d_model: int = 256            #: width of every hidden representation
    n_layers: int = 4             #: temporal blocks per modality
    d_state: int = 16             #: Mamba SSM state size
    d_conv: int = 4               #: Mamba depthwise convolution width
    expand: int = 2               #: Mamba inner width = expand * d_model (transformer FFN too)
    n_heads: int = 8              #: heads of the transformer blocks and the attention pooling
    # --- hyperbolic alignment ---
    geometry: Geometry = "hyperbolic"      #: space of the audio-visual alignment loss
    curvature: Curvature = "adaptive"      #: per-video c = k0*sigmoid(MLP) | constant c = k0
    k0: float = 1.0               #: upper bound of the adaptive curvature; the fixed curvature
    curvature_hidden: int = 64    #: hidden width of the curvature MLP
    clip_radius: float = 2.0      #: tangent vectors are clipped to this norm before expmap0
    #: what the temporal blocks receive: the clipped tangent vectors (the ball acts through the
    #: alignment loss) | logmap0(project(x)): encoder outputs read as points of the ball
    features: Features = "tangent"
    # --- switches ---
    temporal: Temporal = "mamba"              #: temporal blocks: mamba | transformer | none
    fusion: Fusion = "cross"                  #: cross (gated, conv, question-guided) | concat
    mamba_weights: TemporalWeights = "shared"  #: one temporal stack for both modalities or two
    fusion_kernel: int = 3        #: temporal convolution width of the cross fusion (odd)
    backend: Backend = "auto"     #: Mamba implementation: auto | triton | mamba-ssm | mambapy
    # --- training-time behaviour ---
    dropout: float = 0.1
    align_temperature: float = 0.1  #: temperature of the InfoNCE alignment loss

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ModelConfigError(f"SHMambaConfig.{name}: {value!r} is not one of {list(choices)}")
        for name in ("audio_dim", "visual_dim", "text_dim", "d_model", "n_layers", "d_state",
                     "d_conv", "expand", "n_heads", "curvature_hidden", "fusion_kernel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelConfigError(f"SHMambaConfig.{name}: must be a positive integer, got {value!r}")
        for name in ("n_answers", "n_options"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ModelConfigError(f"SHMambaConfig.{name}: must be an integer >= 0, got {value!r}")
        if self.n_answers == 0 and self.n_options == 0:
            raise ModelConfigError("SHMambaConfig: n_answers and n_options are both 0: nothing to predict")
        if self.d_model % self.n_heads:
            raise ModelConfigError(f"SHMambaConfig.d_model ({self.d_model}) must be divisible by "
                             f"n_heads ({self.n_heads})")
        if self.fusion_kernel % 2 == 0:
            raise ModelConfigError(f"SHMambaConfig.fusion_kernel must be odd, got {self.fusion_kernel}")
        for name in ("k0", "clip_radius", "align_temperature"):
            if not float(getattr(self, name)) > 0:
                raise ModelConfigError(f"SHMambaConfig.{name}: must be > 0, got {getattr(self, name)!r}")
        if self.k0 ** 0.5 * self.clip_radius > 3.0:
            # tanh(3.0) = 0.99505 < 1 - 4e-3: clipped points never reach geoopt's boundary projection,
            # so logmap0 inverts expmap0 exactly.
            raise ModelConfigError(f"SHMambaConfig: sqrt(k0) * clip_radius must be <= 3.0 (points would be "
                             f"pushed onto the ball's boundary), got k0={self.k0}, "
                             f"clip_radius={self.clip_radius}")
        if self.features == "ball" and self.geometry != "hyperbolic":
            raise ModelConfigError("SHMambaConfig.features = 'ball' needs geometry = 'hyperbolic'")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ModelConfigError(f"SHMambaConfig.dropout: must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def architecture(self) -> dict:
        """The fields that decide the weights and what they compute (all but RUNTIME_FIELDS)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}

    def architecture_json(self) -> str:
        return json.dumps(self.architecture(), sort_keys=True, separators=(",", ":"))
