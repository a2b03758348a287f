"""Ask a trained run about one video: decode and encode it (and the questions) exactly as the
store the run was trained on was extracted, run the model, return the top answers.

Both stages meet here (inference on a raw video needs the extractor's decoder and encoders as
well as the trained model), which is why it is its own package after both.  Rules:

* the encoders are built from the store's recorded ``extractor_config`` (CLIP model, T, fps,
  sampling, image size, audio reader (``decord`` for stores that record none), VGGish front
  end, seed of random weights, and the precision it resolved to, ``compute_precision``: float32
  on the CPU for stores that record none); their weight identities must
  equal the store's ``encoders`` attribute, else :class:`AskError` names the encoder and both
  identities (``clip_weights`` / ``vggish_weights`` may point at other files holding the same
  weights; random weights are identified by their seed, so a demo run works);
* a store written by ``import-features`` has no visual encoder to run: refused, saying so;
* features are rounded to float16 as the store holds them, so ``ask`` on a video of the store
  gives ``eval``'s prediction (tests/test_avqa_ask.py);
* the question text is normalised as the dataset's annotation loader does
  (:data:`QUESTION_TEXT`), so "How many ...?" asks what the store's "How many ..." asked.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from common.config import build
from common.device import resolve_device
from extract.config import LEGACY_AUDIO_READER, ExtractConfig
from extract.decode import DecodeError, DecodeSpec, decode_video
from extract.discover import DiscoveryError, stat_video
from extract.encode import encode_videos
from extract.encoders import get_encoders
from extract.weights import WeightsError
from qa.annotations import normalize_answer
from train.checkpoint import check_compatible, find_checkpoint
from train.data import open_store, store_dims
from train.runs import CONFIG_FILE, STORE_FILE, read_json, resolve_run_dir
from train.step import graph_autocast


class AskError(RuntimeError):
    """The run, store, encoders or inputs do not allow answering; the message says why."""


def _music_text(q: str) -> str:
    """MUSIC-AVQA stores filled templates without the final question mark."""
    q = " ".join(q.split())
    return q[:-1].rstrip() if q.endswith(("?", "？")) else q


#: question text as each dataset's annotation loader stores it (qa/annotations.py)
QUESTION_TEXT: dict[str, Callable[[str], str]] = {
    "music-avqa": _music_text,
    "avqa": lambda q: " ".join(q.split()),
}


@dataclass
class AskSettings:
    """Where the model comes from and how to run it (the ``ask`` command's options)."""

    #: run directory (default: ``<out>/latest``)
    run: str | None = None
    #: folder holding 'latest'
    out: str = "runs"
    #: best, last, or a checkpoint folder
    checkpoint: str = "best"
    #: auto, cpu, cuda or cuda:N (model and encoders)
    device: str = "auto"
    #: answers listed, most probable first
    top: int = 5
    #: other CLIP / VGGish weight files holding the store's weights ('' = as recorded)
    clip_weights: str = ""
    vggish_weights: str = ""


@dataclass
class VideoFeatures:
    """One decoded and encoded video, reused by every question about it."""

    path: str
    audio: np.ndarray      # [T, A] float32 (float16 values)
    visual: np.ndarray     # [T, Dv]
    audio_present: bool
    n_segments: int
    duration: float
    timing: dict = field(default_factory=dict)


@dataclass
class Answer:
    question: str
    type: str | None
    answer: str
    top: list[dict]          # [{"answer", "p"}], most probable first
    curvature: float | None
    audio_present: bool
    n_segments: int
    seconds: float           # the video's duration
    timing: dict             # seconds spent: decode, encode, model

    def to_json(self) -> dict:
        return {"question": self.question, "type": self.type, "answer": self.answer,
                "top": self.top, "curvature": self.curvature, "audio_present": self.audio_present,
                "n_segments": self.n_segments, "seconds": round(self.seconds, 3),
                "timing": {k: round(v, 4) for k, v in self.timing.items()}}


def _store_path(run: Path) -> str:
    recorded = read_json(run / STORE_FILE) if (run / STORE_FILE).is_file() else {}
    if recorded.get("path") and Path(recorded["path"]).exists():
        return str(recorded["path"])
    return str(read_json(run / CONFIG_FILE).get("store") or recorded.get("path") or "")


def encoder_config(attrs: dict, settings: AskSettings) -> ExtractConfig:
    """The extraction config of the store (device and weight files as asked)."""
    recorded = attrs.get("extractor_config") or {}
    if "imported" in recorded or str(attrs["encoders"]["visual"].get("name", "")).startswith("imported:"):
        vis = attrs["encoders"]["visual"]
        raise AskError(f"the run was trained on imported features ({vis.get('name')}, "
                       f"{vis.get('weights')}): there is no visual encoder to run on a new video. "
                       "Ask a run trained on a store made by `extract`")
    recorded = {"audio_reader": LEGACY_AUDIO_READER, **recorded}   # stores made before it existed
    cfg = build(ExtractConfig, {k: v for k, v in recorded.items()
                                if k in ExtractConfig.__dataclass_fields__})
    over = {"device": "cuda" if settings.device.startswith("cuda") else settings.device}
    if recorded.get("compute_precision"):   # the precision the store's features were made at
        over["precision"] = recorded["compute_precision"]
    elif cfg.precision == "auto" and resolve_device(settings.device).type == "cpu":
        over["precision"] = "fp32"   # what 'auto' meant on the CPU before stores recorded it
    if settings.clip_weights:
        over["clip_weights"] = settings.clip_weights
    if settings.vggish_weights:
        over["vggish_weights"] = settings.vggish_weights
    return replace(cfg, **over, questions_only=False)


def check_identities(store_enc: dict, ours: dict) -> None:
    """Refuse encoders whose name or weights differ from the store's, naming which."""
    for key in ("visual", "audio", "text"):
        want, have = store_enc.get(key, {}), ours.get(key, {})
        for k in ("name", "weights", "postprocess", "pca"):
            if want.get(k) != have.get(k):
                raise AskError(f"the {key} encoder differs from the store's: {k} is "
                               f"{have.get(k)!r} here but {want.get(k)!r} in the store; pass the "
                               "weights the store was extracted with (--clip-weights / "
                               "--vggish-weights)")


class Asker:
    """A loaded run (model + the store's encoders); :meth:`video` then :meth:`ask`."""

    def __init__(self, settings: AskSettings):
        from model import SHMambaConfig, build_model

        self.settings = settings
        run = resolve_run_dir(settings.run, settings.out)
        self.ckpt = find_checkpoint(run, settings.checkpoint)
        with open_store(_store_path(run)) as fs:
            self.attrs = dict(fs.attrs)
            check_compatible(self.ckpt.meta, dims=store_dims(fs), where=f"checkpoint {self.ckpt.path}")
        self.cfg = encoder_config(self.attrs, settings)
        try:
            self.enc = get_encoders(self.cfg)
        except (WeightsError, RuntimeError) as exc:
            raise AskError(f"cannot build the store's encoders: {exc}") from None
        check_identities(self.attrs["encoders"], self.enc.identities)
        self.device = resolve_device(settings.device)
        self.mcfg = dict(self.ckpt.meta["model_config"])
        self.model = build_model(SHMambaConfig(**self.mcfg))
        self.ckpt.load_weights(self.model)
        self.model.to(self.device).eval()
        self.amp = str(read_json(run / CONFIG_FILE).get("amp", "auto"))
        self.n_options = int(self.attrs.get("n_options", 0))
        self.text = QUESTION_TEXT.get(self.attrs.get("dataset"), QUESTION_TEXT["avqa"])

    def video(self, path: str | Path) -> VideoFeatures:
        """Decode + encode one video as the store's extraction did (features in float16)."""
        t0 = time.perf_counter()
        try:
            vf = stat_video(path)
            decoded = decode_video(vf.path, DecodeSpec.from_config(self.cfg, self.enc.clip.image_size))
        except (OSError, DecodeError, DiscoveryError) as exc:
            raise AskError(f"cannot read the video {path}: {exc}") from None
        t1 = time.perf_counter()
        ev = encode_videos([(vf, decoded)], self.enc, self.cfg)[0]
        t2 = time.perf_counter()
        f16 = lambda a: np.asarray(a, np.float16).astype(np.float32)  # noqa: E731 - as stored
        return VideoFeatures(str(path), f16(ev.audio), f16(ev.visual), bool(ev.audio_present),
                             int(ev.n_segments), float(ev.duration),
                             {"decode": t1 - t0, "encode_video": t2 - t1})

    def _check_options(self, options: Sequence[str] | None) -> list[str] | None:
        if self.n_options and not options:
            raise AskError(f"the run is multiple choice ({self.n_options} options): pass "
                           f"--options with {self.n_options} answers separated by '|'")
        if not self.n_options and options:
            raise AskError("the run answers from its vocabulary and takes no --options")
        if options and len(options) != self.n_options:
            raise AskError(f"--options: {len(options)} given, the run needs {self.n_options}")
        return [normalize_answer(o) for o in options] if options else None

    def _check_type(self, qtype: str | None) -> None:
        names = list(self.attrs["type_names"])
        if qtype is not None and qtype not in names:
            raise AskError(f"--type {qtype!r} is not a question type of the store: {names}")

    @torch.no_grad()
    def ask(self, feats: VideoFeatures, questions: Sequence[str],
            options: Sequence[Sequence[str]] | None = None, qtype: str | None = None) -> list[Answer]:
        """Answer ``questions`` about one encoded video (``options[i]``: the i-th question's
        options when the run is multiple choice)."""
        self._check_type(qtype)
        opts = [self._check_options(o) for o in (options or [None] * len(questions))]
        t0 = time.perf_counter()
        texts = [self.text(q) for q in questions]
        sent, tok, mask = self.enc.clip.encode_text(texts)
        f16 = lambda a: torch.from_numpy(np.asarray(a, np.float16).astype(np.float32)).to(self.device)  # noqa: E731
        opt_t = None
        if self.n_options:
            flat = [o for os_ in opts for o in os_]
            opt_t = f16(self.enc.clip.encode_sentences(flat).reshape(len(texts), self.n_options, -1))
        t1 = time.perf_counter()
        use_tokens = bool(self.mcfg.get("use_tokens", False))
        with graph_autocast(self.device, self.amp)():
            out = self.model(f16(feats.audio[None]), f16(feats.visual[None]), f16(sent),
                             tokens=f16(tok) if use_tokens else None,
                             token_mask=torch.from_numpy(mask).to(self.device) if use_tokens else None,
                             video_index=torch.zeros(len(texts), dtype=torch.long, device=self.device),
                             options=opt_t)
        probs = torch.softmax(out.logits.float(), -1).cpu().numpy()
        curv = None if out.curvature is None else float(out.curvature.float().reshape(-1)[0])
        timing = dict(feats.timing, encode_text=t1 - t0, model=time.perf_counter() - t1)
        labels = list(self.attrs["answer_vocab"])
        answers = []
        for q, p, o in zip(questions, probs, opts):
            names = o if o is not None else labels
            order = np.argsort(-p, kind="stable")[:max(1, self.settings.top)]
            top = [{"answer": names[int(i)], "p": round(float(p[int(i)]), 6)} for i in order]
            answers.append(Answer(q, qtype, top[0]["answer"], top, curv, feats.audio_present,
                                  feats.n_segments, feats.duration, timing))
        return answers


def ask(video: str | Path, questions: Sequence[str], settings: AskSettings | None = None,
        options: Sequence[Sequence[str]] | None = None, qtype: str | None = None) -> list[Answer]:
    """Load the run, decode + encode ``video`` once and answer every question about it."""
    asker = Asker(settings or AskSettings())
    return asker.ask(asker.video(video), questions, options, qtype)


__all__ = ["ask", "Asker", "AskSettings", "AskError", "Answer", "VideoFeatures", "QUESTION_TEXT"]
