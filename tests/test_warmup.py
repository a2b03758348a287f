"""The GPU warm-up of extraction (extract/warmup.py): layer shapes from the model's JSON config,
and the warm-up itself run for real (on the CPU here; tests/gpu runs it on CUDA) without drawing
random numbers or touching the encoders."""
from __future__ import annotations

import torch

from extract.warmup import start_warmup, tower_shapes, warm


def test_tower_shapes_come_from_the_model_config():
    assert tower_shapes("ViT-B-32") == [(768, 12, 50), (512, 8, 77)]
    assert tower_shapes("ViT-L-14") == [(1024, 16, 257), (768, 12, 77)]
    assert tower_shapes("no-such-model") == []


def test_warm_runs_every_layer_and_draws_no_random_numbers():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    warm(torch.device("cpu"), "fp32", "ViT-B-32")
    assert torch.equal(torch.random.get_rng_state(), before)


def test_no_thread_for_the_cpu_and_a_finished_one_otherwise():
    assert start_warmup("cpu", "auto", "ViT-B-32") is None
    thread = start_warmup("auto", "auto", "ViT-B-32")   # CPU-only here: resolves and returns
    thread.join(timeout=60)
    assert not thread.is_alive()
