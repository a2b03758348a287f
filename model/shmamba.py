"""SHMamba: hyperbolic audio-visual alignment + Mamba temporal blocks + cross fusion, for AVQA.

Tensors in, tensors out (the model knows nothing of files).  The forward pass, top to bottom:

    per video (once per distinct video, V of them)
      audio [V,T,A] -> Linear -> a [V,T,d]          visual [V,T,Dv] -> Linear -> v [V,T,d]
      Alignment: clip, curvature c [V], InfoNCE loss on Poincare-ball distances
      TemporalBlocks: n_layers Mamba (or Transformer, or none) blocks over time, each modality
      fusion.per_video: gates from the other modality, temporal conv -> fused keys/values
    per question (B of them; video_index [B] says which video each one is about)
      question [B,Dt] -> Linear -> q [B,d]   (+ attention over its tokens if use_tokens)
      fusion.per_question: q attends over its video's fused sequence -> pooled [B,d]
      head: GELU(Linear([pooled ; q])) -> LayerNorm -> classifier over answers [B,n_answers]
            or, given options [B,K,Dt], scores <z, Linear(option_k)> / sqrt(d) -> [B,K]

The loss the trainer builds is cross-entropy(logits) + lambda * out.align_loss.

Every model carries its architecture (config minus runtime fields, plus the variant name) as a
small uint8 buffer ``arch_spec`` in its state_dict, and refuses to load a state_dict whose
``arch_spec`` differs, naming both variants and the differing fields; see ``load_state``.
"""
from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .config import ModelConfigError, SHMambaConfig
from .fusion import AttentionPool, ConcatFusion, CrossFusion
from .hyperbolic import Alignment
from .ssm import resolve_backend
from .temporal import TemporalBlocks
from .variants import DEFAULT_VARIANT, variant_config, variant_name

log = logging.getLogger(__name__)

ARCH_KEY = "arch_spec"
#: fields added after checkpoints existed: recorded in arch_spec only when not at this default,
#: so an older checkpoint's record (and buffer size) is still that of the same architecture
LATER_FIELDS = {"features": "tangent"}


@dataclass
class ModelOutput:
    """What ``SHMamba.forward`` returns.

    logits: [B, n_answers] answer logits, or [B, K] option scores when options were given.
    align_loss: float32 scalar, the audio-visual alignment loss over the V distinct videos.
    curvature: [V] per-video curvature c (the ball has curvature -c); None for euclidean.
    extra: "attention" [B, heads, T] pooling weights (cross fusion); "answer_logits" [B, n_answers]
        when options were given and the model also has an answer classifier.
    """

    logits: torch.Tensor
    align_loss: torch.Tensor
    curvature: torch.Tensor | None
    extra: dict = field(default_factory=dict)


class SHMamba(nn.Module):
    def __init__(self, cfg: SHMambaConfig | None = None):
        super().__init__()
        cfg = cfg if cfg is not None else SHMambaConfig()
        self.cfg = cfg
        d = cfg.d_model
        if cfg.temporal == "mamba":
            self.backend, self.backend_reason = resolve_backend(cfg.backend, cfg.d_state, cfg.d_conv)
            log.info("SHMamba(%s): Mamba backend %s (%s)", self.variant, self.backend, self.backend_reason)
        else:
            self.backend, self.backend_reason = None, f"no Mamba blocks (temporal={cfg.temporal!r})"

        self.audio_enc = nn.Linear(cfg.audio_dim, d)
        self.visual_enc = nn.Linear(cfg.visual_dim, d)
        self.question_enc = nn.Linear(cfg.text_dim, d)
        self.token_pool = AttentionPool(d, cfg.n_heads) if cfg.use_tokens else None
        self.align = Alignment(d, cfg.geometry, cfg.curvature, cfg.k0, cfg.curvature_hidden,
                               cfg.clip_radius, cfg.align_temperature, cfg.features)
        self.temporal = TemporalBlocks(cfg, self.backend)
        self.fusion = (CrossFusion(d, cfg.n_heads, cfg.fusion_kernel) if cfg.fusion == "cross"
                       else ConcatFusion(d))
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.LayerNorm(d), nn.Dropout(cfg.dropout))
        self.classifier = nn.Linear(d, cfg.n_answers) if cfg.n_answers > 0 else None
        self.option_enc = nn.Linear(cfg.text_dim, d) if cfg.n_options > 0 else None
        self.drop = nn.Dropout(cfg.dropout)

        arch = {k: v for k, v in cfg.architecture().items() if LATER_FIELDS.get(k, object()) != v}
        spec = json.dumps({"variant": self.variant, **arch}, sort_keys=True)
        self.register_buffer(ARCH_KEY, torch.tensor(list(spec.encode()), dtype=torch.uint8))
        self._warned_tokens = False

    @property
    def variant(self) -> str:
        return variant_name(self.cfg)

    # ---------------------------------------------------------------------------------- forward
    def forward(self, audio: torch.Tensor, visual: torch.Tensor, question: torch.Tensor,
                tokens: torch.Tensor | None = None, token_mask: torch.Tensor | None = None,
                video_index: torch.Tensor | None = None, options: torch.Tensor | None = None,
                video_mask: torch.Tensor | None = None) -> ModelOutput:
        """audio [V,T,A], visual [V,T,Dv]: the V distinct videos (float16/32; cast inside).
        question [B,Dt]; tokens [B,L,Dt] + token_mask [B,L] bool (used when cfg.use_tokens);
        video_index [B] long: the video of each question (None: V == B, question b <-> video b);
        options [B,K,Dt] with K == cfg.n_options (multiple choice).
        video_mask [V] bool: the real videos of a padded (static-shape) batch; padding rows stay
        out of the alignment loss and no question should point at them.
        The V videos should be distinct: the alignment loss treats the other videos of the batch
        as negatives (pass each video once and point questions at it with video_index).
        """
        self._check_inputs(audio, visual, question, tokens, token_mask, video_index, options,
                           video_mask)
        dtype, cast = self.audio_enc.weight.dtype, self._cast

        # per video
        a = self.drop(self.audio_enc(cast(audio)))
        v = self.drop(self.visual_enc(cast(visual)))
        a, v, align_loss, curvature = self.align(a, v, video_mask)
        a, v = self.temporal(a.to(dtype), v.to(dtype))
        state = self.fusion.per_video(a, v)

        # per question
        q = self.question_enc(cast(question))
        if self.token_pool is not None:
            tok = self.question_enc(cast(tokens))
            q = q + self.token_pool(q, self.token_pool.keys_values(tok), None, token_mask)[0]
        pooled, attention = self.fusion.per_question(state, q, video_index)
        z = self.head(torch.cat([pooled, q], dim=-1))

        extra = {} if attention is None else {"attention": attention}
        answer_logits = self.classifier(z) if self.classifier is not None else None
        if options is not None:
            o = self.option_enc(cast(options))                                  # [B, K, d]
            logits = torch.einsum("bd,bkd->bk", z, o) / math.sqrt(z.shape[-1])
            if answer_logits is not None:
                extra["answer_logits"] = answer_logits
        else:
            logits = answer_logits
        return ModelOutput(logits=logits, align_loss=align_loss, curvature=curvature, extra=extra)

    def _cast(self, x: torch.Tensor) -> torch.Tensor:
        """Store features (float16) in the weights' dtype; under autocast the linear layer casts
        them itself, and float16 -> bfloat16 directly equals float16 -> float32 -> bfloat16."""
        if torch.is_autocast_enabled(x.device.type) and x.dtype != torch.float64:  # autocast skips float64
            return x
        return x.to(self.audio_enc.weight.dtype)

    def video_embedding(self, audio: torch.Tensor, visual: torch.Tensor):
        """What the alignment compares, per video: the time-pooled clipped tangent vectors of the
        audio and the visual sequence [V, d] (float32) and the curvature c [V] (None for
        ``euclidean``).  Call in eval mode for values without dropout (curvature records, views)."""
        a = self.drop(self.audio_enc(self._cast(audio)))
        v = self.drop(self.visual_enc(self._cast(visual)))
        ua, uv, c = self.align.embed(a, v)
        return ua.mean(dim=1), uv.mean(dim=1), c

    def _check_inputs(self, audio, visual, question, tokens, token_mask, video_index, options,
                      video_mask=None) -> None:
        cfg = self.cfg

        def shape_error(name: str, want: str, t: torch.Tensor) -> ValueError:
            return ValueError(f"SHMamba({self.variant}): {name} must be {want}, got shape {tuple(t.shape)}")

        if audio.dim() != 3 or audio.shape[-1] != cfg.audio_dim:
            raise shape_error("audio", f"[V, T, {cfg.audio_dim}] (audio_dim)", audio)
        if visual.dim() != 3 or visual.shape[-1] != cfg.visual_dim:
            raise shape_error("visual", f"[V, T, {cfg.visual_dim}] (visual_dim)", visual)
        if visual.shape[:2] != audio.shape[:2]:
            raise ValueError(f"SHMamba: audio {tuple(audio.shape)} and visual {tuple(visual.shape)} "
                             "must have the same number of videos V and segments T")
        if question.dim() != 2 or question.shape[-1] != cfg.text_dim:
            raise shape_error("question", f"[B, {cfg.text_dim}] (text_dim)", question)
        V, B = audio.shape[0], question.shape[0]
        if V == 0 or audio.shape[1] == 0:
            raise shape_error("audio", "non-empty [V, T, A]", audio)
        if video_index is None:
            if V != B:
                raise ValueError(f"SHMamba: without video_index there must be one video per question, "
                                 f"got V={V} videos and B={B} questions")
        else:
            if video_index.shape != (B,) or video_index.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"SHMamba: video_index must be an integer tensor of shape [{B}], "
                                 f"got {video_index.dtype} {tuple(video_index.shape)}")
            # the range check reads values back to the host: only where that costs no GPU sync
            # (on CUDA an index out of range still fails, as a device-side assert in the gather)
            if B and not video_index.is_cuda and (int(video_index.min()) < 0 or int(video_index.max()) >= V):
                raise ValueError(f"SHMamba: video_index values must lie in [0, {V}), got "
                                 f"[{int(video_index.min())}, {int(video_index.max())}]")
        if cfg.use_tokens:
            if tokens is None:
                raise ValueError("SHMamba: cfg.use_tokens is set, so tokens [B, L, text_dim] are required")
            if tokens.dim() != 3 or tokens.shape[0] != B or tokens.shape[-1] != cfg.text_dim:
                raise shape_error("tokens", f"[{B}, L, {cfg.text_dim}]", tokens)
            if token_mask is not None and (token_mask.shape != tokens.shape[:2] or token_mask.dtype != torch.bool):
                raise ValueError(f"SHMamba: token_mask must be bool of shape {tuple(tokens.shape[:2])}, "
                                 f"got {token_mask.dtype} {tuple(token_mask.shape)}")
        elif tokens is not None and not self._warned_tokens:
            warnings.warn("SHMamba: tokens given but cfg.use_tokens is False: they are ignored",
                          stacklevel=3)
            self._warned_tokens = True
        if video_mask is not None and (video_mask.shape != audio.shape[:1] or video_mask.dtype != torch.bool):
            raise ValueError(f"SHMamba: video_mask must be bool of shape [{V}], got "
                             f"{video_mask.dtype} {tuple(video_mask.shape)}")
        if options is not None:
            if self.option_enc is None:
                raise ValueError("SHMamba: options given but cfg.n_options is 0 (no option scoring head)")
            if options.dim() != 3 or options.shape[0] != B or options.shape[1:] != (cfg.n_options, cfg.text_dim):
                raise shape_error("options", f"[{B}, {cfg.n_options}, {cfg.text_dim}] (n_options, text_dim)",
                                  options)
        elif self.classifier is None:
            raise ValueError("SHMamba: cfg.n_answers is 0, so options [B, K, text_dim] are required")

    # ----------------------------------------------------------------------------- loading
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + ARCH_KEY
        if key in state_dict:
            check_architecture(decode_arch(state_dict[key]), decode_arch(getattr(self, ARCH_KEY)))
            state_dict[key] = getattr(self, ARCH_KEY)  # same architecture, possibly an older record
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    # ----------------------------------------------------------------------------- reporting
    def describe(self) -> dict:
        """Variant, resolved config, Mamba backend actually used, learnable parameters."""
        return {"variant": self.variant, "backend": self.backend, "backend_reason": self.backend_reason,
                "config": self.cfg.to_dict(), "parameters": count_parameters(self)}


# -------------------------------------------------------------------------------------- helpers
def decode_arch(t: torch.Tensor) -> dict:
    """The architecture dict stored in an ``arch_spec`` buffer."""
    try:
        return json.loads(bytes(t.detach().to("cpu", torch.uint8).tolist()).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"state_dict[{ARCH_KEY!r}] is not a valid architecture record: {exc}") from exc


def check_architecture(theirs: dict, mine: dict) -> None:
    """Raise ValueError unless two architecture records are equal; name variants and fields."""
    theirs, mine = {**LATER_FIELDS, **theirs}, {**LATER_FIELDS, **mine}
    if theirs == mine:
        return
    keys = sorted(set(theirs) | set(mine))
    diff = [f"{k}: {theirs.get(k)!r} (state_dict) vs {mine.get(k)!r} (model)"
            for k in keys if k != "variant" and theirs.get(k) != mine.get(k)]
    raise ModelConfigError(f"state_dict was saved from variant {theirs.get('variant')!r} but the model is "
                     f"variant {mine.get('variant')!r}; differing fields: {'; '.join(diff) or 'none'}")


def load_state(model: SHMamba, state: dict, variant: str | None = None) -> None:
    """Load ``state`` into ``model`` only if it comes from the same variant and architecture.

    ``variant``: the variant name recorded with the checkpoint, if any; checked against the model.
    Raises ValueError naming the variants, differing config fields, or missing/unexpected/misshapen
    keys.
    """
    if variant is not None and variant != model.variant:
        raise ModelConfigError(f"checkpoint variant {variant!r} does not match the model variant {model.variant!r}")
    if ARCH_KEY in state:
        check_architecture(decode_arch(state[ARCH_KEY]), decode_arch(getattr(model, ARCH_KEY)))
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    misshapen = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                 for k in sorted(set(own) & set(state))
                 if k != ARCH_KEY and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or misshapen:
        raise ModelConfigError(f"state_dict does not fit variant {model.variant!r}: missing keys {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}"
                         f"{' ...' if len(unexpected) > 8 else ''}, shape mismatches {misshapen[:8]}")
    model.load_state_dict(state, strict=True)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Learnable parameters per top-level component (children without any are left out) + total."""
    counts = {}
    for name, child in model.named_children():
        if any(True for _ in child.parameters()):
            counts[name] = sum(p.numel() for p in child.parameters() if p.requires_grad)
    counts["total"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return counts


def build_model(name_or_config: str | SHMambaConfig = DEFAULT_VARIANT, seed: int | None = None,
                **overrides) -> SHMamba:
    """SHMamba from a registered variant name (plus SHMambaConfig overrides) or a config.

    ``seed``: initialise the weights from this seed without touching the global RNG state.
    """
    if isinstance(name_or_config, SHMambaConfig):
        known = set(name_or_config.to_dict())
        if set(overrides) - known:
            raise ModelConfigError(f"build_model: unknown SHMambaConfig field(s) {sorted(set(overrides) - known)}")
        cfg = SHMambaConfig(**{**name_or_config.to_dict(), **overrides}) if overrides else name_or_config
    else:
        cfg = variant_config(name_or_config, **overrides)
    if seed is None:
        return SHMamba(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SHMamba(cfg)
