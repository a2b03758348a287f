"""VGGish (torchvggish), the first entry of the audio-encoder registry (:mod:`extract.audio`):
128-d per 96x64 log-mel patch (front end :class:`extract.logmel.LogMelFrontEnd`), optionally
PCA-whitened and quantised like the AudioSet release (``vggish_postprocess``).

Light at import (the registry and the decode workers import it): torch loads when an encoder is
built; the network is :mod:`extract.vggish_net` (torchvggish's parameter names and values).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from common.device import Autocast, resolve_device, weights_dtype

from .logmel import NUM_BANDS, NUM_FRAMES, LogMelFrontEnd
from .weights import (ResolvedWeights, WeightsError, load_state_dict_file, resolve_vggish_pca,
                      resolve_vggish_weights)

WIDTH = 128
FRONT_END = LogMelFrontEnd()


class VGGishEncoder:
    """VGGish's network (torchvggish's release state_dict layout) on log-mel patches."""

    def __init__(self, weights: ResolvedWeights, device: str = "cpu", precision: str = "auto",
                 postprocess: bool = False, pca: ResolvedWeights | None = None):
        import torch

        self.weights = weights
        model = vgg_network(weights)
        self.device = resolve_device(device)
        self.dtype = weights_dtype(self.device, precision)
        # oneDNN's CPU convolutions run ~1.4x faster channels-last, with the same values
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.model = model.eval().requires_grad_(False).to(self.device, self.dtype).to(
            memory_format=self.memory_format)
        self.autocast = Autocast.for_precision(self.device, precision)
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

    def encode(self, patches: Any) -> np.ndarray:
        """[N, 96, 64] log-mel -> [N, 128] float32."""
        import torch

        x = torch.as_tensor(patches, dtype=torch.float32)
        if x.ndim != 3 or tuple(x.shape[1:]) != (NUM_FRAMES, NUM_BANDS):
            raise ValueError(f"audio patches must be [N, 96, 64], got {tuple(x.shape)}")
        if x.shape[0] == 0:
            return np.zeros((0, WIDTH), np.float32)
        x = x.to(self.device, self.dtype, non_blocking=True)[:, None].contiguous(
            memory_format=self.memory_format)
        with torch.no_grad():
            with self.autocast():
                emb = self.model(x)
            emb = emb.float()
            if self.postprocess:  # AudioSet release: PCA-whiten, clip to [-2, 2], quantise to 0..255
                emb = (emb - self.pca_means) @ self.pca_matrix.T
                emb = torch.round((emb.clamp(-2.0, 2.0) + 2.0) * (255.0 / 4.0))
        return emb.cpu().numpy()

    def identity(self) -> dict:
        """``attrs['encoders']['audio']`` after the name: weights, postprocess (and PCA file)."""
        out: dict = {"weights": self.weights.identity, "postprocess": self.postprocess}
        if self.postprocess and self.pca is not None:
            out["pca"] = self.pca.identity
        return out


def vgg_network(weights: ResolvedWeights) -> Any:
    """VGGish's network (:mod:`extract.vggish_net`, torchvggish's layout; on the CPU) with ``weights``: seeded random, or the tensors of a file,
    cast to the parameters' dtypes as copying into them would."""
    import torch

    from .vggish_net import VGGish

    if weights.kind == "random":
        torch.manual_seed(int(weights.seed))
        return VGGish()
    with torch.device("meta"):   # no random init (72M parameters) of values the file replaces
        model = VGGish()
    own = model.state_dict()
    sd = {k: v.to(own[k].dtype) if k in own and torch.is_tensor(v) else v
          for k, v in load_state_dict_file(weights.path).items()}
    try:
        model.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as exc:
        raise WeightsError(f"{weights.path}: not VGGish weights: {str(exc)[:400]}") from None
    return model


def weight_resolvers(cfg: Any) -> dict[str, Callable[[], ResolvedWeights]]:
    """``--vggish-weights`` and, with ``--vggish-postprocess``, ``--vggish-pca``."""
    found = {"weights": lambda: resolve_vggish_weights(cfg.vggish_weights, cfg.seed)}
    if cfg.vggish_postprocess:
        found["pca"] = lambda: resolve_vggish_pca(cfg.vggish_pca)
    return found


def build(cfg: Any, weights: Mapping[str, ResolvedWeights]) -> VGGishEncoder:
    return VGGishEncoder(weights["weights"], device=cfg.device, precision=cfg.precision,
                         postprocess=cfg.vggish_postprocess, pca=weights.get("pca"))


def settings(cfg: Any) -> tuple:
    """The config values that change the built encoder."""
    return (cfg.vggish_weights, bool(cfg.vggish_postprocess),
            cfg.vggish_pca if cfg.vggish_postprocess else "")
