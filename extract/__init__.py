"""Stage one: videos -> features.  Discovery, decoding, the encoders, batching and distribution,
shard writing.  Dataset records live in :mod:`qa`, the synthetic demo data in :mod:`synth`.

Public names are imported lazily (PEP 562), so ``import extract.decode`` does not pull in torch,
open_clip or decord.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # extraction (python cli.py extract)
    "ExtractConfig": "extract.config",
    "load_extract_config": "extract.config",
    "extract": "extract.pipeline",
    "print_summary": "extract.pipeline",
    "ExtractSummary": "extract.pipeline",
    "ExtractError": "extract.errors",
    "extract_video_reference": "extract.encode",
    "discover_videos": "extract.discover",
    "DiscoveryError": "extract.discover",
    "VideoFile": "extract.discover",
    "decode_video": "extract.decode",
    "DecodeSpec": "extract.decode",
    "DecodedVideo": "extract.decode",
    "DecodeError": "extract.decode",
    "ClipEncoder": "extract.encoders",
    "VGGishEncoder": "extract.vggish",
    "AudioEncoderEntry": "extract.audio",
    "register_audio_encoder": "extract.audio",
    "get_audio_encoder": "extract.audio",
    "get_encoders": "extract.encoders",
    "save_weights": "extract.weights",
    "WeightsError": "extract.weights",
    "resolve_clip_weights": "extract.weights",
    "resolve_vggish_weights": "extract.weights",
    "DaskRunner": "extract.distributed",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'extract' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
