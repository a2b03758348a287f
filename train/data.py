"""Training data from the feature store, on the device.

:class:`StoreData` opens the splits a run needs.  The videos those splits reference (one row per
video, shared by all of its questions — nothing is copied per question) and each split's question
arrays are put on the device **once** when they fit the memory budget; a batch is then a pure
index gather on the device (``torch.unique(return_inverse=True)`` turns the batch's video rows
into the distinct videos the model runs once each, plus ``video_index`` mapping questions to
them).  A part that does not fit is *streamed*: its rows for each batch are read from HDF5 by a
background thread that runs ``prefetch`` batches ahead.  Both modes produce the same batches.

:func:`reference_batch` is the slow reference: one question and one video at a time, through
the store reader, in plain Python.  Tests check that both fast modes agree with it.
"""
from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, fields
from typing import Iterable, Iterator

import numpy as np
import torch

from store.reader import FeatureStore
from store.schema import SCHEMA_VERSION
from store.verify import verify_store

#: store attributes a run and a checkpoint depend on
DIM_ATTRS = ("schema_version", "T", "audio_dim", "visual_dim", "text_dim", "text_len", "n_options")


class DataError(ValueError):
    """A store does not fit the run (schema, dims, split) — the message names the field."""


def check_splits(store: FeatureStore, names: Iterable[str]) -> None:
    """DataError naming the first of ``names`` without questions, and the splits there are."""
    for name in names:
        if store.split_rows(name).size == 0:
            have, counts = np.unique(store.questions("split").astype(str), return_counts=True)
            there = ", ".join(f"{h} ({c})" for h, c in zip(have, counts)) or "none"
            raise DataError(f"store {store.path}: split {name!r} has no questions (the store's "
                            f"splits: {there})")


def store_dims(store: FeatureStore) -> dict:
    """The dims of a store that a model/checkpoint depends on."""
    a = store.attrs
    dims = {k: int(a[k]) for k in DIM_ATTRS}
    dims["answer_vocab"] = list(a["answer_vocab"])
    dims["n_answers"] = len(dims["answer_vocab"])
    dims["type_names"] = list(a["type_names"])
    return dims


#: dims held as lists (compared element by element, shown by length)
LIST_DIMS = ("answer_vocab", "type_names")


def dim_differences(a: dict, b: dict, keys: Iterable[str], a_name: str, b_name: str) -> list[str]:
    """``"key: <a_name> has X, <b_name> has Y"`` for each of ``keys`` both dicts hold with
    different values (a None in ``b`` means "any").  The one dims comparison: store vs
    checkpoint, store vs config, store vs expected dims."""
    out = []
    for key in keys:
        if key not in a or key not in b or b[key] is None:
            continue
        x, y = a[key], b[key]
        if key in LIST_DIMS:
            if list(x) != list(y):
                out.append(f"{key}: {a_name} has {len(x)} entries, {b_name} has {len(y)} entries")
        elif int(x) != int(y):
            out.append(f"{key}: {a_name} has {x!r}, {b_name} has {y!r}")
    return out


def check_dims(store_path: str, actual: dict, expected: dict, what: str) -> None:
    """Error naming each field of ``expected`` that differs from the store's ``actual`` value."""
    problems = dim_differences(actual, expected, expected, "store", what)
    if problems:
        raise DataError(f"store {store_path} does not match the {what}: " + "; ".join(problems))


def check_store_quick(path: str) -> None:
    """Refuse a store that fails ``store verify --quick`` (shard missing, changed size, not in
    the index, unreadable, incompatible) with a message that says to run ``store verify``.
    Questions whose video is not in the store are allowed (they are counted as dropped)."""
    from pathlib import Path


    if not Path(path).exists():
        return                      # FeatureStore names the missing file
    problems = verify_store(path, quick=True, questions_without_video_ok=True)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError(f"store {path} fails the quick integrity check: "
                        + "; ".join(problems[:3]) + more
                        + f". Run `python cli.py store verify {path}` for a full report")


def open_store(path: str, expected: dict | None = None, what: str = "config") -> FeatureStore:
    """Open the store at ``path``, check its schema version, and check its dims against
    ``expected`` (e.g. the model overrides of a config, or a checkpoint's dims)."""
    if not path:
        raise DataError("no store given (--store PATH to a feats.h5 entry file)")
    check_store_quick(path)
    store = FeatureStore(path)
    version = int(store.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise DataError(f"store {path}: schema_version is {version}, this code reads "
                        f"{SCHEMA_VERSION}")
    if expected:
        check_dims(path, store_dims(store), expected, what)
    return store


@dataclass
class Batch:
    """One batch.  Video tensors have one row per *distinct* video of the batch."""

    audio: torch.Tensor          # [V, T, A] float32
    visual: torch.Tensor         # [V, T, Dv] float32
    audio_present: torch.Tensor  # [V] bool
    video_index: torch.Tensor    # [B] long, question -> row of the video tensors
    videos: torch.Tensor         # [V] long, the videos' rows in StoreData.v_rows
    sentence: torch.Tensor       # [B, Dt] float32
    tokens: torch.Tensor | None  # [B, L, Dt] float32
    token_mask: torch.Tensor | None  # [B, L] bool
    options: torch.Tensor | None     # [B, K, Dt] float32
    answer: torch.Tensor         # [B] long (-1 = unknown)
    qtype: torch.Tensor          # [B] long
    index: torch.Tensor          # [B] long, positions in the split (see SplitInfo)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = None if v is None else v.to(device, non_blocking=non_blocking)
        return Batch(**kw)


@dataclass
class SplitInfo:
    """The questions of one split that have a video, in store row order."""

    name: str
    q_rows: np.ndarray        # [N] global question rows
    video_local: np.ndarray   # [N] row in StoreData.v_rows
    question_ids: np.ndarray  # [N] int64
    answer: np.ndarray        # [N] int64
    qtype: np.ndarray         # [N] int64
    dropped: int              # questions of the split whose video is not in the store

    def __len__(self) -> int:
        return int(self.q_rows.shape[0])


def default_budget_bytes(device: torch.device) -> int:
    """Half the free device memory (CUDA) or half the available RAM (CPU)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = 8 << 30
    return int(avail * 0.5)


class StoreData:
    """The splits of one store a run needs, resident on ``device`` where they fit.

    ``with_tokens``: also load ``questions/tokens`` + ``token_mask`` (only if the model uses
    them).  Options are loaded when the store is multiple choice (``n_options > 0``).
    ``memory_budget_mb``: 0 = :func:`default_budget_bytes`; parts are made resident in this
    order until the budget is spent — videos, then each split's questions — and the rest is
    streamed.
    """

    VIDEO_FIELDS = ("audio", "visual", "audio_present")

    def __init__(self, store: FeatureStore, splits: Iterable[str], device: torch.device | str,
                 *, with_tokens: bool = True, memory_budget_mb: float = 0.0, prefetch: int = 2,
                 log=None) -> None:
        self.store = store
        self.device = torch.device(device)
        self.with_tokens = with_tokens
        self.with_options = int(store.attrs.get("n_options", 0)) > 0
        self.prefetch = max(1, int(prefetch))
        self.question_fields = ("sentence",) + (("tokens", "token_mask") if with_tokens else ()) \
            + (("options",) if self.with_options else ())
        log = log or (lambda msg: None)

        split_names = list(dict.fromkeys(splits))
        all_vrow = np.asarray(store.question_video_row, dtype=np.int64)
        per_split: dict[str, tuple[np.ndarray, int]] = {}
        for name in split_names:
            rows = np.asarray(store.split_rows(name), dtype=np.int64)
            if rows.size == 0:
                raise DataError(f"store {store_path(store)}: split {name!r} has no questions "
                                f"(questions/split)")
            keep = all_vrow[rows] >= 0
            per_split[name] = (rows[keep], int((~keep).sum()))
        self.v_rows = np.unique(np.concatenate([all_vrow[r] for r, _ in per_split.values()]))
        answers = np.asarray(store.questions("answer"), dtype=np.int64)
        types = np.asarray(store.questions("type"), dtype=np.int64)
        qids = np.asarray(store.question_ids, dtype=np.int64)
        self.splits: dict[str, SplitInfo] = {}
        for name, (rows, dropped) in per_split.items():
            local = np.searchsorted(self.v_rows, all_vrow[rows])
            self.splits[name] = SplitInfo(name, rows, local, qids[rows], answers[rows],
                                          types[rows], dropped)
            if dropped:
                log(f"split {name}: {dropped} question(s) refer to videos missing from the "
                    "store and are left out")

        budget = int(memory_budget_mb * (1 << 20)) if memory_budget_mb > 0 \
            else default_budget_bytes(self.device)
        a = store.attrs
        T, A, Dv, Dt = int(a["T"]), int(a["audio_dim"]), int(a["visual_dim"]), int(a["text_dim"])
        L, K = int(a["text_len"]), int(a.get("n_options", 0))
        video_bytes = len(self.v_rows) * (T * A * 2 + T * Dv * 2 + 1)
        q_bytes_each = Dt * 2 + (L * Dt * 2 + L if with_tokens else 0) \
            + (K * Dt * 2 if self.with_options else 0) + 8 * 3
        # -- videos
        self.videos_resident = video_bytes <= budget
        self._video: dict[str, torch.Tensor] = {}
        if self.videos_resident:
            budget -= video_bytes
            for f in self.VIDEO_FIELDS:
                self._video[f] = torch.from_numpy(np.ascontiguousarray(
                    store.videos(f, rows=self.v_rows))).to(self.device)
        # -- questions, per split
        self._q: dict[str, dict[str, torch.Tensor]] = {}
        self.questions_resident: dict[str, bool] = {}
        for name, info in self.splits.items():
            need = len(info) * q_bytes_each
            resident = need <= budget
            self.questions_resident[name] = resident
            small = {"answer": torch.from_numpy(info.answer).to(self.device),
                     "qtype": torch.from_numpy(info.qtype).to(self.device),
                     "video_local": torch.from_numpy(info.video_local.astype(np.int64)).to(self.device)}
            if resident:
                budget -= need
                for f in self.question_fields:
                    small[f] = torch.from_numpy(np.ascontiguousarray(
                        store.questions(f, rows=info.q_rows))).to(self.device)
            self._q[name] = small
        log(f"data on {self.device}: videos {'resident' if self.videos_resident else 'streamed'} "
            f"({len(self.v_rows)} videos, {video_bytes / 2**20:.1f} MiB); questions "
            + ", ".join(f"{n} {'resident' if r else 'streamed'} ({len(self.splits[n])})"
                        for n, r in self.questions_resident.items()))

    # -- properties ----------------------------------------------------------------------------

    @property
    def fully_resident(self) -> bool:
        return self.videos_resident and all(self.questions_resident.values())

    def __len__(self) -> int:
        return len(self.v_rows)

    # -- batches -------------------------------------------------------------------------------
    #
    # A batch's bookkeeping (its distinct videos and each question's position among them) is
    # computed on the host from small index arrays, so nothing here waits for the device: on
    # CUDA, index tensors go over with non-blocking copies and the gathers are queued behind the
    # previous step's kernels.

    def plan(self, split: str, index: np.ndarray) -> dict[str, np.ndarray]:
        """Host-side bookkeeping of one batch: positions, distinct videos, video_index."""
        vloc = self.splits[split].video_local[index]
        uniq, inv = np.unique(vloc, return_inverse=True)
        return {"index": index.astype(np.int64), "videos": uniq.astype(np.int64),
                "video_index": inv.reshape(-1).astype(np.int64)}

    def _host_part(self, split: str, plan: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Read from HDF5 whatever of this batch is not resident (off the main thread when
        streaming); the store reader reads each shard once per field."""
        info = self.splits[split]
        out: dict[str, torch.Tensor] = {}
        if not self.questions_resident[split]:
            rows = info.q_rows[plan["index"]]
            for f in self.question_fields:
                out[f] = torch.from_numpy(np.ascontiguousarray(self.store.questions(f, rows=rows)))
        if not self.videos_resident:
            for f in self.VIDEO_FIELDS:
                out["v_" + f] = torch.from_numpy(np.ascontiguousarray(
                    self.store.videos(f, rows=self.v_rows[plan["videos"]])))
        return out

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _assemble(self, split: str, plan: dict[str, torch.Tensor], host: dict) -> Batch:
        """Gather the resident parts on the device and add the streamed ones."""
        q = self._q[split]
        index, uniq, video_index = plan["index"], plan["videos"], plan["video_index"]

        def qfield(f):
            return self._to_device(host[f]) if f in host else q[f][index]

        def vfield(f):
            return self._to_device(host["v_" + f]) if "v_" + f in host else self._video[f][uniq]

        def as_float(t):
            return None if t is None else t.float()

        return Batch(
            audio=as_float(vfield("audio")), visual=as_float(vfield("visual")),
            audio_present=vfield("audio_present").bool(), video_index=video_index, videos=uniq,
            sentence=as_float(qfield("sentence")),
            tokens=as_float(qfield("tokens")) if self.with_tokens else None,
            token_mask=qfield("token_mask").bool() if self.with_tokens else None,
            options=as_float(qfield("options")) if self.with_options else None,
            answer=q["answer"][index], qtype=q["qtype"][index], index=index)

    def gather(self, split: str, index: torch.Tensor, videos: torch.Tensor,
               video_index: torch.Tensor) -> Batch:
        """The batch of device index tensors (question positions, distinct video rows, question ->
        video): device gathers only, so it can run inside a CUDA graph.  Resident data only."""
        if not (self.videos_resident and self.questions_resident[split]):
            raise RuntimeError(f"gather: split {split!r} is not fully resident on {self.device}")
        return self._assemble(split, {"index": index, "videos": videos, "video_index": video_index}, {})

    def _plans_on_device(self, plans: list[dict[str, np.ndarray]]) -> list[dict[str, torch.Tensor]]:
        """All plans' index arrays in one host->device copy per key; views per batch."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in plans]
        for key in ("index", "videos", "video_index"):
            sizes = [len(p[key]) for p in plans]
            flat = self._to_device(torch.from_numpy(
                np.concatenate([p[key] for p in plans]) if plans else np.zeros(0, np.int64)))
            for o, part in zip(out, torch.split(flat, sizes)):
                o[key] = part
        return out

    def batch(self, split: str, index: torch.Tensor | np.ndarray) -> Batch:
        """The batch of questions at positions ``index`` of ``split`` (synchronous)."""
        idx = (index.cpu().numpy() if torch.is_tensor(index) else np.asarray(index)).astype(np.int64)
        plan = self.plan(split, idx)
        host = self._host_part(split, plan)
        return self._assemble(split, self._plans_on_device([plan])[0], host)

    def batches(self, split: str, indices: Iterable[torch.Tensor | np.ndarray]) -> Iterator[Batch]:
        """Batches for each index array, in order.  Fully resident: device gathers only.
        Otherwise a background thread reads the streamed parts ``prefetch`` batches ahead."""
        plans = [self.plan(split, (i.cpu().numpy() if torch.is_tensor(i) else np.asarray(i))
                            .astype(np.int64)) for i in indices]
        dev_plans = self._plans_on_device(plans)
        streamed = not (self.videos_resident and self.questions_resident[split])
        if not streamed:
            for dp in dev_plans:
                yield self._assemble(split, dp, {})
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def reader():
            try:
                for i, plan in enumerate(plans):
                    if stop.is_set() or not put((i, self._host_part(split, plan))):
                        return
            except BaseException as exc:  # surfaced in the consumer
                put(exc)
                return
            put(None)

        thread = threading.Thread(target=reader, name="store-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                i, host = item
                yield self._assemble(split, dev_plans[i], host)
        finally:
            stop.set()
            thread.join(timeout=30)


def store_path(store: FeatureStore) -> str:
    return str(getattr(store, "path", getattr(store, "entry_path", "?")))


def epoch_order(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random question order: ``torch.randperm`` on a seeded CPU generator (the same order on
    every device and every rank)."""
    return torch.randperm(n, generator=generator)


def video_grouped_order(video_local: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """A random order in which the questions of each video are consecutive: the videos in a
    random order, each video's questions in a random order.  Cut into batches, most questions
    then share their batch with the other questions of their video, so the per-video path
    (projection, alignment, temporal blocks, fusion) runs ~questions-per-video times less often
    than with :func:`epoch_order`.  Vectorised: two ``randperm`` draws and one ``lexsort``."""
    video_local = np.asarray(video_local, dtype=np.int64)
    n = len(video_local)
    n_v = int(video_local.max()) + 1 if n else 0
    video_rank = torch.randperm(n_v, generator=generator).numpy()
    tie = torch.randperm(n, generator=generator).numpy()
    return torch.from_numpy(np.lexsort((tie, video_rank[video_local])).astype(np.int64))


def batch_indices(order: torch.Tensor, batch_size: int, drop_last: bool = False,
                  min_size: int = 1) -> list[torch.Tensor]:
    """Split ``order`` into global batches; a last batch smaller than ``min_size`` (the number
    of ranks, so each gets a question) or than ``batch_size`` with ``drop_last`` is dropped."""
    out = list(torch.split(order, batch_size))
    if out and (len(out[-1]) < min_size or (drop_last and len(out[-1]) < batch_size)):
        out.pop()
    return out


def reference_batch(store: FeatureStore, split: str, positions: Iterable[int],
                    with_tokens: bool = True) -> Batch:
    """Slow reference for :meth:`StoreData.batch`: one question and one video at a time through
    the store reader, with plain Python bookkeeping.  ``positions`` index the split's questions
    that have a video, in store row order (as :class:`SplitInfo` does)."""
    rows_all = [int(r) for r in store.split_rows(split)]
    vrow = store.question_video_row
    rows_all = [r for r in rows_all if int(vrow[r]) >= 0]
    with_options = int(store.attrs.get("n_options", 0)) > 0
    qrows = [rows_all[p] for p in positions]
    video_rows = sorted({int(vrow[r]) for r in qrows})
    where = {v: i for i, v in enumerate(video_rows)}

    def one_video(field, v):
        return torch.from_numpy(np.asarray(store.videos(field, rows=slice(v, v + 1))[0]))

    def one_question(field, r):
        return torch.from_numpy(np.asarray(store.questions(field, rows=slice(r, r + 1))[0]))

    def stack(items):
        return torch.stack(items) if items else None

    return Batch(
        audio=stack([one_video("audio", v).float() for v in video_rows]),
        visual=stack([one_video("visual", v).float() for v in video_rows]),
        audio_present=stack([one_video("audio_present", v).bool() for v in video_rows]),
        video_index=torch.tensor([where[int(vrow[r])] for r in qrows], dtype=torch.long),
        videos=torch.tensor(video_rows, dtype=torch.long),
        sentence=stack([one_question("sentence", r).float() for r in qrows]),
        tokens=stack([one_question("tokens", r).float() for r in qrows]) if with_tokens else None,
        token_mask=stack([one_question("token_mask", r).bool() for r in qrows]) if with_tokens else None,
        options=stack([one_question("options", r).float() for r in qrows]) if with_options else None,
        answer=torch.tensor([int(one_question("answer", r)) for r in qrows], dtype=torch.long),
        qtype=torch.tensor([int(one_question("type", r)) for r in qrows], dtype=torch.long),
        index=torch.tensor(list(positions), dtype=torch.long))
