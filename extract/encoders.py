"""The encoders: CLIP (open_clip) for frames and text, VGGish (torchvggish) for audio.

* :class:`ClipEncoder` — frame embeddings ``[N, Dv]`` (and optionally the projected patch tokens
  ``[N, P, Dv]``), question sentence embeddings ``[B, Dt]`` plus token embeddings ``[B, L, Dt]``
  with a mask, and option sentences.  The text path runs the text transformer itself
  (token_embedding + positional_embedding + transformer + ln_final, then text_projection on
  every token); the sentence is the EOT-token output, exactly what ``model.encode_text`` returns.
* :class:`VGGishEncoder` — 128-d per 96x64 log-mel patch, optionally PCA-whitened and quantised
  like the AudioSet release (``postprocess``).
* :func:`get_encoders` — builds both once per process (a cache keyed by the relevant config), so
  dask workers and repeated calls reuse loaded models.

Models are built on the CPU (seeded for random weights), then moved to the device.  On CUDA the
forward passes run under fp16/bf16 autocast; on the CPU in float32.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from common.device import resolve_device

from .weights import (ResolvedWeights, WeightsError, load_state_dict_file, resolve_clip_weights,
                      resolve_vggish_pca, resolve_vggish_weights)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = plain float32)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class _Autocast:
    def __init__(self, device: torch.device, dtype: torch.dtype | None):
        self.device, self.dtype = device, dtype

    def __call__(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


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
        import open_clip

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
            else:
                model = open_clip.create_model(name, pretrained=weights.path, **kwargs)
        except RuntimeError as exc:
            raise WeightsError(f"cannot build CLIP {model_name!r} with {weights.identity}: {exc}") from None
        self.device = resolve_device(device)
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.autocast = _Autocast(self.device, autocast_dtype(self.device, precision))
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
        return (x - self.mean) / self.std

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


class VGGishEncoder:
    """torchvggish's VGG network (release state_dict layout) on log-mel patches."""

    def __init__(self, weights: ResolvedWeights, device: str = "cpu", precision: str = "auto",
                 postprocess: bool = False, pca: ResolvedWeights | None = None):
        from torchvggish.torchvggish import VGG, make_layers

        self.weights = weights
        if weights.kind == "random":
            torch.manual_seed(int(weights.seed))
        model = VGG(make_layers(), postprocess=False)
        if weights.kind != "random":
            sd = load_state_dict_file(weights.path)
            try:
                model.load_state_dict(sd, strict=True)
            except RuntimeError as exc:
                raise WeightsError(f"{weights.path}: not VGGish weights: {str(exc)[:400]}") from None
        self.device = resolve_device(device)
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.autocast = _Autocast(self.device, autocast_dtype(self.device, precision))
        self.postprocess = bool(postprocess)
        self.pca = pca
        if self.postprocess:
            if pca is None:
                raise WeightsError("VGGish postprocess needs PCA parameters (--vggish-pca)")
            params = load_state_dict_file(pca.path)
            try:
                self.pca_matrix = torch.as_tensor(params["pca_eigen_vectors"]).float().to(self.device)
                self.pca_means = torch.as_tensor(params["pca_means"]).float().reshape(1, -1).to(self.device)
            except KeyError as exc:
                raise WeightsError(f"{pca.path}: missing {exc} (expected the torchvggish PCA file "
                                   "with pca_eigen_vectors and pca_means)") from None

    @torch.no_grad()
    def encode(self, patches: np.ndarray | torch.Tensor) -> np.ndarray:
        """[N, 96, 64] log-mel -> [N, 128] float32."""
        x = torch.as_tensor(patches, dtype=torch.float32)
        if x.ndim != 3 or tuple(x.shape[1:]) != (96, 64):
            raise ValueError(f"audio patches must be [N, 96, 64], got {tuple(x.shape)}")
        if x.shape[0] == 0:
            return np.zeros((0, 128), np.float32)
        x = x.to(self.device, non_blocking=True)[:, None]
        with self.autocast():
            emb = self.model(x)
        emb = emb.float()
        if self.postprocess:  # AudioSet release: PCA-whiten, clip to [-2, 2], quantise to 0..255
            emb = (emb - self.pca_means) @ self.pca_matrix.T
            emb = torch.round((emb.clamp(-2.0, 2.0) + 2.0) * (255.0 / 4.0))
        return emb.cpu().numpy()


@dataclass
class Encoders:
    clip: ClipEncoder
    vggish: VGGishEncoder | None  # None when built with audio=False (questions only)
    identities: dict  # attrs['encoders']


_CACHE: dict[tuple, Encoders] = {}
_CACHE_LOCK = threading.Lock()


def encoder_key(cfg: Any, audio: bool = True) -> tuple:
    return (bool(audio), cfg.clip_model, cfg.clip_weights, cfg.vggish_weights, bool(cfg.vggish_postprocess),
            cfg.vggish_pca if cfg.vggish_postprocess else "", int(cfg.seed), cfg.device,
            cfg.precision, int(cfg.text_len), int(cfg.image_size))


def encoder_identities(clip: ClipEncoder, vggish: VGGishEncoder | None) -> dict:
    """``attrs['encoders']``: name and weight identity of each encoder."""
    if vggish is None:
        audio: dict = {"name": "vggish", "weights": None}
    else:
        audio = {"name": "vggish", "weights": vggish.weights.identity,
                 "postprocess": vggish.postprocess}
        if vggish.postprocess and vggish.pca is not None:
            audio["pca"] = vggish.pca.identity
    return {"audio": audio,
            "visual": {"name": clip.model_name, "weights": clip.weights.identity},
            "text": {"name": clip.model_name, "weights": clip.weights.identity}}


def build_encoders(cfg: Any, audio: bool = True) -> Encoders:
    """Resolve weights and build the encoders for ``cfg`` (an ExtractConfig); all weights are
    resolved before any model is built, so a missing file fails before minutes of loading."""
    resolvers = {"clip": lambda: resolve_clip_weights(cfg.clip_model, cfg.clip_weights, cfg.seed)}
    if audio:
        resolvers["vggish"] = lambda: resolve_vggish_weights(cfg.vggish_weights, cfg.seed)
        if cfg.vggish_postprocess:
            resolvers["pca"] = lambda: resolve_vggish_pca(cfg.vggish_pca)
    found, missing = {}, []
    for name, resolve in resolvers.items():   # every missing file named in one error
        try:
            found[name] = resolve()
        except WeightsError as exc:
            missing.append(str(exc))
    if missing:
        raise WeightsError("\n\n".join(missing))
    clip_w, vgg_w, pca, vgg = found["clip"], found.get("vggish"), found.get("pca"), None
    clip = ClipEncoder(cfg.clip_model, clip_w, device=cfg.device, precision=cfg.precision,
                       text_len=cfg.text_len, image_size=cfg.image_size)
    if audio:
        vgg = VGGishEncoder(vgg_w, device=cfg.device, precision=cfg.precision,
                            postprocess=cfg.vggish_postprocess, pca=pca)
    return Encoders(clip, vgg, encoder_identities(clip, vgg))


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

