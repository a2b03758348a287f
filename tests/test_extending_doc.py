"""docs/EXTENDING.md's examples run as written: each ```python block registers its audio encoder,
dataset format or model variant, which then works (and is removed again)."""
from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np

from extract.audio import get_audio_encoder, unregister_audio_encoder
from extract.config import ExtractConfig
from extract.decode import DecodeSpec
from model.variants import VARIANTS
from qa.annotations import load_annotations, unregister_format

DOC = Path(__file__).resolve().parents[1] / "docs" / "EXTENDING.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def run_block(index: int, name: str) -> dict:
    """Run one block as the module ``name`` (a dataclass needs its module in sys.modules)."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        exec(compile(blocks()[index], f"{DOC}:{name}", "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module.__dict__


def test_the_doc_has_one_example_each():
    assert len(blocks()) == 3


def test_audio_encoder_example(tmp_path):
    try:
        run_block(0, "doc_audio")
        entry = get_audio_encoder("tiny-bands")
        cfg = ExtractConfig(audio_encoder="tiny-bands")
        assert DecodeSpec.from_config(cfg, 64).front_end == entry.front_end
        t = np.arange(3 * 8000) / 8000
        inputs = entry.front_end(np.sin(2 * np.pi * 440 * t).astype(np.float32), np.array([0.5, 1.5]))
        assert inputs.shape == (2, 8) and inputs.dtype == np.float32
        weights = {k: r() for k, r in entry.weights(cfg).items()}
        encoder = entry.build(cfg, weights)
        assert encoder.encode(inputs).shape == (2, entry.width) == (2, 16)
        assert encoder.identity() == {"weights": "random:0"}
    finally:
        unregister_audio_encoder("tiny-bands")


def test_dataset_format_example(tmp_path):
    try:
        run_block(1, "doc_format")
        path = tmp_path / "clip-qa-train.json"
        path.write_text(json.dumps([{"qid": 7, "clip": "a", "ask": "Is it loud?",
                                     "kind": "Loudness", "reply": "Yes"}]))
        records, vocab = load_annotations(path)
        assert vocab.dataset == "clip-qa"
        assert [(r.question_id, r.answer_index, r.split) for r in records] == [(7, 1, "train")]
    finally:
        unregister_format("clip-qa")


def test_model_variant_example():
    try:
        scope = run_block(2, "doc_variant")
        assert (scope["cfg"].geometry, scope["cfg"].fusion) == ("euclidean", "concat")
    finally:
        VARIANTS.pop("euclidean-concat", None)
