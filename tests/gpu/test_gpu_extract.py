"""Extraction on CUDA: the GPU warm-up (extract/warmup.py) runs every layer under the run's
autocast without error, from its thread as the extract command starts it, and leaves the
encoders' outputs unchanged.  Skips without CUDA.  On the GPU machine, from the project root:
``python -m pytest -q tests/gpu/test_gpu_extract.py``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from extract.encoders import ClipEncoder
from extract.warmup import start_warmup, warm
from extract.weights import resolve_clip_weights

if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)


@pytest.mark.parametrize("precision", ["auto", "fp16", "fp32"])
def test_warm_runs_on_cuda(precision):
    warm(torch.device("cuda"), precision, "ViT-B-32")


def test_the_warmup_thread_overlaps_the_build_and_changes_no_output():
    frames = np.random.default_rng(0).integers(0, 255, (4, 224, 224, 3), dtype=np.uint8)
    weights = resolve_clip_weights("ViT-B-32", "random:0")
    before = ClipEncoder("ViT-B-32", weights, device="cuda").encode_images(frames)[0]
    thread = start_warmup("cuda", "auto", "ViT-B-32")
    enc = ClipEncoder("ViT-B-32", weights, device="cuda")
    thread.join(timeout=120)
    assert not thread.is_alive()
    np.testing.assert_array_equal(enc.encode_images(frames)[0], before)
