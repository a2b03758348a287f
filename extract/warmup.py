"""Warming the GPU while open_clip imports and the encoders are built.

The first CUDA call of each kind is slow on a fresh process: the context, cuBLAS and cuDNN
handles, and loading (or compiling) the attention and convolution kernels; the first attention
call alone took 2.3 s on the H200 machine.  None of that needs open_clip or the weights, so
:func:`start_warmup` runs it in a thread on layers of the model's own widths (from its JSON
config), under the run's autocast, while the main thread imports open_clip and builds the
encoders.  Torch's operators release the GIL, so the two overlap.  The warm-up draws no random
numbers (``skip_random_init``; its values are zeros) and changes nothing the run computes.
"""
from __future__ import annotations

import logging
import threading

import torch
from torch import nn

from common.device import autocast_dtype, resolve_device

from .clip_models import model_config
from .skip_init import skip_random_init

log = logging.getLogger(__name__)


def tower_shapes(clip_model: str) -> list[tuple[int, int, int]]:
    """(width, heads, tokens) of the model's image and text transformers, as far as its JSON
    config tells (ViT-B-32: 768/12/50 and 512/8/77); [] when there is no config."""
    cfg = model_config(clip_model) or {}
    shapes = []
    vision, text = cfg.get("vision_cfg") or {}, cfg.get("text_cfg") or {}
    if isinstance(vision.get("width"), int):
        size, patch = vision.get("image_size", 224), vision.get("patch_size", 16)
        size = size[0] if isinstance(size, (list, tuple)) else size
        grid = int(size) // int(patch) if isinstance(patch, int) else 14
        shapes.append((vision["width"], vision["width"] // vision.get("head_width", 64), grid * grid + 1))
    if isinstance(text.get("width"), int):
        shapes.append((text["width"], text.get("heads", text["width"] // 64), text.get("context_length", 77)))
    return shapes


def _block(width: int, heads: int, device: torch.device) -> nn.Module:
    with skip_random_init(), device:
        block = nn.ModuleDict({"ln": nn.LayerNorm(width), "attn": nn.MultiheadAttention(
            width, heads, batch_first=True), "fc": nn.Linear(width, 4 * width),
            "proj": nn.Linear(4 * width, width)})
    for p in block.parameters():
        p.data.zero_()
    return block.eval()


@torch.no_grad()
def warm(device: torch.device, precision: str, clip_model: str) -> None:
    """The first calls of what the encoders run: attention, matmuls, layer norm, GELU and the
    convolutions (CLIP's patch embedding, VGGish's first layers), on zeros."""
    dtype = autocast_dtype(device, precision)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for width, heads, tokens in tower_shapes(clip_model):
            block = _block(width, heads, device)
            x = block["ln"](torch.zeros(2, tokens, width, device=device))
            for mask in (None, torch.zeros(tokens, tokens, device=device)):
                y, _ = block["attn"](x, x, x, need_weights=False, attn_mask=mask)
            block["proj"](nn.functional.gelu(block["fc"](y)))
        img = torch.zeros(2, 3, 224, 224, device=device)
        nn.functional.conv2d(img, torch.zeros(64, 3, 32, 32, device=device), stride=32)
        spec = torch.zeros(2, 1, 96, 64, device=device)
        h = nn.functional.conv2d(spec, torch.zeros(64, 1, 3, 3, device=device), padding=1)
        nn.functional.conv2d(nn.functional.max_pool2d(h, 2), torch.zeros(128, 64, 3, 3, device=device),
                             padding=1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(device: str, precision: str, clip_model: str) -> None:
    try:
        dev = resolve_device(device)
        if dev.type == "cuda":
            warm(dev, precision, clip_model)
    except Exception as exc:  # only a head start: the run itself reports real errors
        log.debug("GPU warm-up failed: %s", exc)


def start_warmup(device: str, precision: str, clip_model: str) -> threading.Thread | None:
    """A started thread warming ``device`` ('auto', 'cuda', 'cuda:N'; None for 'cpu'); the
    device is resolved in the thread too (CUDA's first use is part of what it overlaps)."""
    if device == "cpu":
        return None
    thread = threading.Thread(target=_run, args=(device, precision, clip_model),
                              name="gpu-warmup", daemon=True)
    thread.start()
    return thread
