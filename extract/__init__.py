"""Stage one: annotations, decoding, encoders, batching/distribution, synthetic data.

Public names are imported lazily (PEP 562), so ``import extract.annotations`` does not pull in
torch, open_clip or decord.
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
    "ExtractError": "extract.pipeline",
    "extract_video_reference": "extract.pipeline",
    "discover_videos": "extract.discover",
    "DiscoveryError": "extract.discover",
    "VideoFile": "extract.discover",
    "decode_video": "extract.decode",
    "DecodeSpec": "extract.decode",
    "DecodedVideo": "extract.decode",
    "DecodeError": "extract.decode",
    "ClipEncoder": "extract.encoders",
    "VGGishEncoder": "extract.encoders",
    "get_encoders": "extract.encoders",
    "save_weights": "extract.weights",
    "WeightsError": "extract.weights",
    "resolve_clip_weights": "extract.weights",
    "resolve_vggish_weights": "extract.weights",
    "DaskRunner": "extract.distributed",
    # annotations and test/demo video writing (other modules of this package)
    "load_annotations": "extract.annotations",
    "find_annotation_files": "extract.annotations",
    "QARecord": "extract.annotations",
    "Vocabulary": "extract.annotations",
    "AnnotationError": "extract.annotations",
    "write_av": "extract.avwrite",
    # the synthetic demo dataset (python cli.py synth)
    "synthesize": "extract.synth",
    "SynthConfig": "extract.synth",
    "SynthSummary": "extract.synth",
    "plan": "extract.synth",
    "load_scenes": "extract.synth",
    "scene_answers": "extract.synth_qa",
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
