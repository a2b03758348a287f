"""The encoders: CLIP (open_clip) for frames and text, and the registered audio encoder
(:mod:`extract.audio`; VGGish by default, :mod:`extract.vggish`) for audio.

* :class:`ClipEncoder` — frame embeddings ``[N, Dv]`` (and optionally the projected patch tokens
  ``[N, P, Dv]``), question sentence embeddings ``[B, Dt]`` plus token embeddings ``[B, L, Dt]``
  with a mask, and option sentences.  The text path runs the text transformer itself
  (token_embedding + positional_embedding + transformer + ln_final, then text_projection on
  every token); the sentence is the EOT-token output, exactly what ``model.encode_text`` returns.
* :func:`get_encoders` — builds both once per process (a cache keyed by the relevant config), so
  dask workers and repeated calls reuse loaded models.

Models are built on the CPU (seeded for random weights; with weights from a file, no random
values are drawn: :mod:`extract.skip_init`), then moved to the device.  On CUDA the
forward passes run under fp16/bf16 autocast; on the CPU with bfloat16 or float32 weights
(:func:`common.device.resolve_precision`).
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from common.device import Autocast, resolve_device, weights_dtype

from .audio import AudioEncoder, AudioEncoderEntry, get_audio_encoder
from .clip_models import import_open_clip
from .skip_init import skip_random_init
from .weights import ResolvedWeights, WeightsError, resolve_clip_weights


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


@contextmanager
def _dropped_log(prefix: str) -> Iterator[None]:
    """Within the block, root-logger records starting with ``prefix`` are dropped."""
    drop = _DropPrefix(prefix)
    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


class ClipEncoder:
    """An open_clip model in eval mode with batched image and text encoding."""

    def __init__(self, model_name: str, weights: ResolvedWeights, device: str = "cpu",
                 precision: str = "auto", text_len: int = 32, image_size: int = 0):
        open_clip = import_open_clip(model_name)
        self.model_name = model_name
        self.weights = weights
        self.text_len = int(text_len)
        name = model_name.replace("/", "-")
        kwargs: dict[str, Any] = {}
        if image_size:
            kwargs["force_image_size"] = int(image_size)
        if weights.kind == "tag":
            tag_cfg = open_clip.get_pretrained_cfg(name, weights.tag)
            kwargs["force_quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
            kwargs["force_preprocess_cfg"] = {k: tag_cfg[k] for k in
                                              ("mean", "std", "interpolation", "resize_mode")
                                              if k in tag_cfg}
        try:
            if weights.kind == "random":
                torch.manual_seed(int(weights.seed))
                with _dropped_log("No pretrained weights loaded"):   # random on purpose; the
                    model = open_clip.create_model(name, pretrained=None, **kwargs)  # summary says so
            else:   # the strict load replaces every random value: none are drawn
                with skip_random_init():
                    model = open_clip.create_model(name, pretrained=weights.path, **kwargs)
        except RuntimeError as exc:
            raise WeightsError(f"cannot build CLIP {model_name!r} with {weights.identity}: {exc}") from None
        self.device = resolve_device(device)
        self.dtype = weights_dtype(self.device, precision)
        self.model = model.eval().requires_grad_(False).to(self.device, self.dtype)
        self.autocast = Autocast.for_precision(self.device, precision)
        self.tokenizer = open_clip.get_tokenizer(name)
        pp = getattr(model.visual, "preprocess_cfg", {}) or {}
        mean = pp.get("mean", open_clip.OPENAI_DATASET_MEAN)
        std = pp.get("std", open_clip.OPENAI_DATASET_STD)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self._lock = threading.Lock()
        with torch.no_grad():
            probe = self.encode_text(["a"])
            self.text_dim = int(probe[0].shape[-1])
            img = np.zeros((1, self.image_size, self.image_size, 3), np.uint8)
            emb, _ = self.encode_images(img)
            self.visual_dim = int(emb.shape[-1])
        self._n_patches: int | None = None

    # -- images ---------------------------------------------------------------------------
    def _pixels(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(frames)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames must be [N, H, W, 3] uint8, got {tuple(x.shape)}")
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        return ((x - self.mean) / self.std).to(self.dtype)

    @torch.no_grad()
    def encode_images(self, frames: np.ndarray | torch.Tensor, patches: bool = False
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """[N, S, S, 3] uint8 -> (embeddings float32 [N, Dv], patch tokens [N, P, Dv] or None)."""
        x = self._pixels(frames)
        visual = self.model.visual
        if not patches:
            with self.autocast():
                emb = self.model.encode_image(x)
            return emb.float().cpu().numpy(), None
        if not hasattr(visual, "output_tokens") or getattr(visual, "proj", None) is None:
            raise ValueError(f"patch tokens need a ViT image tower with a projection; "
                             f"{self.model_name} has {type(visual).__name__}")
        with self._lock:  # output_tokens is module state; keep concurrent callers apart
            old = visual.output_tokens
            visual.output_tokens = True
            try:
                with self.autocast():
                    pooled, tokens = visual(x)
                    tokens = tokens @ visual.proj
            finally:
                visual.output_tokens = old
        return pooled.float().cpu().numpy(), tokens.float().cpu().numpy()

    @property
    def n_patches(self) -> int:
        if self._n_patches is None:
            img = np.zeros((1, self.image_size, self.image_size, 3), np.uint8)
            self._n_patches = int(self.encode_images(img, patches=True)[1].shape[1])
        return self._n_patches

    # -- text -----------------------------------------------------------------------------
    def _text_tower(self):
        m = self.model
        tower = m if hasattr(m, "token_embedding") else getattr(m, "text", None)
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
        if tower is None or not all(hasattr(tower, a) for a in needed) or \
                getattr(tower, "cls_emb", None) is not None:
            raise ValueError(f"token embeddings need an open_clip text transformer; "
                             f"{self.model_name} has {type(getattr(m, 'text', m)).__name__}")
        return tower

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Texts -> (sentence [B, Dt], tokens [B, L, Dt], token mask [B, L]) as float32/bool.

        Tokens are the projected outputs of every position from SOT to EOT, truncated/zero-padded
        to L = text_len; the sentence is the output at the EOT position, which is what
        ``model.encode_text`` computes (the text transformer is causal, so running only the first
        ``max(real length)`` positions gives the same outputs as the full context).
        """
        from open_clip.transformer import text_global_pool

        tower = self._text_tower()
        ids = self.tokenize(texts).to(self.device)
        pool = getattr(tower, "text_pool_type", "argmax")
        n = ids.shape[1]
        if tower.attn_mask is not None and pool in ("argmax", "eos"):
            n = max(int((ids != 0).sum(1).max()), 1)
        ids_n = ids[:, :n]
        with self.autocast():
            cast = tower.transformer.get_cast_dtype()
            x = tower.token_embedding(ids_n).to(cast)
            x = x + tower.positional_embedding[:n].to(cast)
            mask = tower.attn_mask[:n, :n] if tower.attn_mask is not None else None
            x = tower.transformer(x, attn_mask=mask)
            x = tower.ln_final(x)
            proj = tower.text_projection
            if proj is not None:
                x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
            sentence = text_global_pool(x, ids_n, pool, eos_token_id=getattr(tower, "text_eos_id", None))
        L = self.text_len
        tokens = torch.zeros(x.shape[0], L, x.shape[-1], dtype=torch.float32, device=x.device)
        k = min(L, n)
        tokens[:, :k] = x[:, :k].float()
        tmask = torch.zeros(x.shape[0], L, dtype=torch.bool, device=x.device)
        tmask[:, :k] = ids_n[:, :k] != 0
        tokens = tokens * tmask[..., None]
        return sentence.float().cpu().numpy(), tokens.cpu().numpy(), tmask.cpu().numpy()

    @torch.no_grad()
    def encode_text_reference(self, texts: list[str]) -> np.ndarray:
        """The slow reference for the sentence: open_clip's own ``model.encode_text``."""
        ids = self.tokenize(texts).to(self.device)
        with self.autocast():
            out = self.model.encode_text(ids)
        return out.float().cpu().numpy()

    def encode_sentences(self, texts: list[str]) -> np.ndarray:
        """Sentence embeddings only [B, Dt] (answer options)."""
        return self.encode_text(texts)[0]


@dataclass
class Encoders:
    clip: ClipEncoder
    audio: AudioEncoder | None  # None when built with audio=False (questions only)
    audio_entry: AudioEncoderEntry  # the registered audio encoder: name, width, front end
    identities: dict  # attrs['encoders']

    @property
    def audio_dim(self) -> int:
        """The store's ``audio_dim``: the registered audio encoder's width."""
        return int(self.audio_entry.width)


_CACHE: dict[tuple, Encoders] = {}
_CACHE_LOCK = threading.Lock()


def encoder_key(cfg: Any, audio: bool = True) -> tuple:
    entry = get_audio_encoder(cfg.audio_encoder)
    return (bool(audio), cfg.clip_model, cfg.clip_weights, entry.name, *entry.settings(cfg),
            int(cfg.seed), cfg.device, cfg.precision, int(cfg.text_len), int(cfg.image_size))


def encoder_identities(clip: ClipEncoder, entry: AudioEncoderEntry,
                       audio: AudioEncoder | None) -> dict:
    """``attrs['encoders']``: name and weight identity of each encoder."""
    identity = audio.identity() if audio is not None else {"weights": None}
    return {"audio": {"name": entry.name, **identity},
            "visual": {"name": clip.model_name, "weights": clip.weights.identity},
            "text": {"name": clip.model_name, "weights": clip.weights.identity}}


def resolve_all(resolvers: dict[str, Callable[[], ResolvedWeights]]) -> dict[str, ResolvedWeights]:
    """Call every resolver; every missing file is named in one :class:`WeightsError`."""
    found, missing = {}, []
    for name, resolve in resolvers.items():
        try:
            found[name] = resolve()
        except WeightsError as exc:
            missing.append(str(exc))
    if missing:
        raise WeightsError("\n\n".join(missing))
    return found


def build_encoders(cfg: Any, audio: bool = True) -> Encoders:
    """Resolve weights and build the encoders for ``cfg`` (an ExtractConfig); all weights are
    resolved before any model is built, so a missing file fails before minutes of loading."""
    entry = get_audio_encoder(cfg.audio_encoder)
    resolvers = {"clip": lambda: resolve_clip_weights(cfg.clip_model, cfg.clip_weights, cfg.seed)}
    if audio:
        resolvers.update({f"audio:{k}": r for k, r in entry.weights(cfg).items()})
    found = resolve_all(resolvers)
    clip = ClipEncoder(cfg.clip_model, found["clip"], device=cfg.device, precision=cfg.precision,
                       text_len=cfg.text_len, image_size=cfg.image_size)
    aud = None
    if audio:
        aud = entry.build(cfg, {k[len("audio:"):]: w for k, w in found.items() if k != "clip"})
    return Encoders(clip, aud, entry, encoder_identities(clip, entry, aud))


def get_encoders(cfg: Any, audio: bool = True) -> Encoders:
    """:func:`build_encoders`, once per process and config (thread-safe)."""
    key = encoder_key(cfg, audio)
    with _CACHE_LOCK:
        enc = _CACHE.get(key)
        if enc is None and not audio:   # text only: reuse a full set already loaded
            enc = _CACHE.get(encoder_key(cfg, True))
        if enc is None:
            enc = build_encoders(cfg, audio)
            _CACHE[key] = enc
        return enc
