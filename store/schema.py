"""The feature store contract, schema v1 — the one place it is written down.

A store is an *entry file* ``feats.h5`` plus a folder of shards ``feats.shards/part-NNNNN.h5``.

Shards
------
Each shard is written by exactly one writer, first under a temporary name
(``.part-NNNNN.h5.tmp`` inside the shard folder) and renamed to ``part-NNNNN.h5`` only after it
has been completely written, flushed and closed.  A writer *claims* a number by creating the temp
name with ``O_CREAT | O_EXCL`` and then checking that ``part-NNNNN.h5`` does not exist yet, so
concurrent writers in other processes never share a number.  A shard may hold videos, questions
or both (questions can be added later to a store whose videos are already extracted).  Files that
do not match ``part-NNNNN.h5`` (temp files of a crashed writer, for instance) are never read;
``store verify`` lists them as notes.

Every shard carries the *store attributes* (see :data:`STORE_ATTRS`; those marked ``json`` are
JSON-encoded strings, see :data:`JSON_ATTRS`) plus the shard attributes ``kind = "shard"``,
``complete`` (set true just before the rename), ``n_videos``, ``n_questions``, ``n_failures``.
All shards of one store must agree on the store attributes listed in :data:`COMPATIBLE_ATTRS`.

Every shard holds every dataset below that the store attributes call for (possibly with 0 rows):
the optional ones exist exactly when ``patches > 0`` (``visual_patches``) or ``n_options > 0``
(``options_text``, ``options``); see :func:`fields_for`.  Datasets are chunked along rows
(about 1 MiB per chunk), uncompressed, and resizable.

Datasets of a shard (N videos, M questions; ``T`` segments; ``L`` text tokens; ``K`` options)::

    videos/id              str      [N]          video id = file stem; plain name, unique in a store
    videos/audio           float16  [N, T, A]    audio embeddings, A = audio_dim (the encoder's width)
    videos/audio_present   bool     [N]          False when the file has no audio stream
    videos/visual          float16  [N, T, Dv]   CLIP frame embeddings
    videos/visual_patches  float16  [N, T, P, Dv] only when patches = P > 0
    videos/n_segments      int32    [N]          real (unpadded) segments, 1..T
    videos/duration        float32  [N]          seconds
    videos/source_path     str      [N]          path as given to the extractor
    videos/source_size     int64    [N]          bytes, to detect changed inputs on resume
    videos/source_mtime    float64  [N]          seconds since the epoch, likewise
    questions/id           int64    [M]          question id, unique in a store
    questions/video_id     str      [M]          the video it is about (resolved to a row by the index)
    questions/split        str      [M]          'train' | 'val' | 'test' | other split names
    questions/type         int16    [M]          index into attrs['type_names'], -1 = unknown
    questions/answer       int16    [M]          index into attrs['answer_vocab'], -1 = unknown
    questions/answer_text  str      [M]          the answer as written in the annotation
    questions/text         str      [M]          the filled question
    questions/sentence     float16  [M, Dt]      CLIP sentence embedding
    questions/tokens       float16  [M, L, Dt]   CLIP token embeddings (L = attrs['text_len'])
    questions/token_mask   bool     [M, L]       True for real tokens
    questions/options_text str      [M, K]       only when n_options = K > 0 (multiple choice)
    questions/options      float16  [M, K, Dt]   only when n_options = K > 0 (sentence emb.)
    failures/path          str      [F]          inputs the extractor could not use
    failures/error         str      [F]
    checksums/<group>/<name> uint32 [ceil(rows / CHECK_BLOCK)]  CRC32 of each block of rows

Strings are HDF5 variable-length UTF-8.  The checksum of a block of rows is ``zlib.crc32`` over
the block's raw little-endian bytes in C order (numeric and bool datasets) or over the UTF-8
bytes of each string followed by one NUL byte, in C order (string datasets).

Entry file
----------
``feats.h5`` is *derived*: it is rebuilt from the complete shards (atomically: written to a temp
name and renamed) and can always be rebuilt again.  It holds the store attributes (taken from
the first shard), ``kind = "entry"``, ``n_videos``, ``n_questions``, ``n_failures``, and::

    index/shard            str      [S]   shard file names, in row order
    index/shard_videos     int64    [S]   videos per shard
    index/shard_questions  int64    [S]   questions per shard
    index/shard_size       int64    [S]   bytes of each shard file at index time
    index/shard_mtime_ns   int64    [S]   mtime of each shard file at index time
    index/shard_sha256     str      [S]   sha256 of each shard file (hex), first computed when the
                                          shard was first indexed (reused while size+mtime match)
    index/video_id         str      [Nv]  all video ids in global row order
    index/question_id      int64    [Nq]  all question ids in global row order
    index/question_video_row int64  [Nq]  global video row of each question, -1 = no such video
    failures/path, failures/error         all shards' failures together

Global row order is shard order, then row order inside the shard.  The store *fingerprint* is
the sha256 of the shard sha256 hex digests joined by newlines, in shard order; a training run
records it to name exactly the features it saw.

Lock
----
``feats.h5.lock`` beside the entry file: an advisory ``flock`` held by the one process allowed
to change the store (extraction, ``drop_videos``), with that process's pid, host and start time
written inside (JSON) so a refused second process can say who holds it.  The kernel releases
the ``flock`` when its holder dies, so a lock left by a killed process is taken over.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SCHEMA_VERSION = 1

#: rows per checksum block (CRC32 over the raw bytes of each block of rows)
CHECK_BLOCK = 64

SHARD_DIR_SUFFIX = ".shards"
SHARD_RE = re.compile(r"^part-(\d{5})\.h5$")
SHARD_TMP_RE = re.compile(r"^\.part-(\d{5})\.h5\.tmp$")
VIDEO_ID_RE = re.compile(r"^[^/\\\x00]+$")


@dataclass(frozen=True)
class Field:
    """One dataset of a shard: its group/name, numpy dtype (``'str'`` for UTF-8 strings),
    shape after the leading row axis (symbols resolved from the store attributes) and whether
    every shard must have it."""

    group: str
    name: str
    dtype: str
    shape: tuple[str, ...] = ()
    required: bool = True

    @property
    def path(self) -> str:
        return f"{self.group}/{self.name}"


VIDEO_FIELDS: tuple[Field, ...] = (
    Field("videos", "id", "str"),
    Field("videos", "audio", "float16", ("T", "audio_dim")),
    Field("videos", "audio_present", "bool"),
    Field("videos", "visual", "float16", ("T", "visual_dim")),
    Field("videos", "visual_patches", "float16", ("T", "patches", "visual_dim"), required=False),
    Field("videos", "n_segments", "int32"),
    Field("videos", "duration", "float32"),
    Field("videos", "source_path", "str"),
    Field("videos", "source_size", "int64"),
    Field("videos", "source_mtime", "float64"),
)

QUESTION_FIELDS: tuple[Field, ...] = (
    Field("questions", "id", "int64"),
    Field("questions", "video_id", "str"),
    Field("questions", "split", "str"),
    Field("questions", "type", "int16"),
    Field("questions", "answer", "int16"),
    Field("questions", "answer_text", "str"),
    Field("questions", "text", "str"),
    Field("questions", "sentence", "float16", ("text_dim",)),
    Field("questions", "tokens", "float16", ("text_len", "text_dim")),
    Field("questions", "token_mask", "bool", ("text_len",)),
    Field("questions", "options_text", "str", ("n_options",), required=False),
    Field("questions", "options", "float16", ("n_options", "text_dim"), required=False),
)

FAILURE_FIELDS: tuple[Field, ...] = (
    Field("failures", "path", "str"),
    Field("failures", "error", "str"),
)

#: Attributes every shard and the entry file carry (JSON-encoded where not scalar).
STORE_ATTRS: dict[str, str] = {
    "schema_version": "int: SCHEMA_VERSION of the writer",
    "T": "int: segments per video",
    "fps": "float: segments per second",
    "audio_dim": "int: audio embedding size, the audio encoder's width (128 for VGGish)",
    "visual_dim": "int: CLIP image embedding size",
    "text_dim": "int: CLIP text embedding size",
    "text_len": "int: token positions stored per question",
    "patches": "int: patch tokens per frame stored (0 = none)",
    "n_options": "int: options per question (0 = not multiple choice)",
    "dataset": "str: 'music-avqa' | 'avqa' | 'synthetic' | ...",
    "answer_vocab": "json list[str]: answer index -> answer string",
    "type_names": "json list[str]: type index -> 'Group/Type' name",
    "encoders": "json dict: {'audio': {'name':..,'weights':..}, 'visual': {...}, 'text': {...}}",
    "extractor_config": "json dict: the resolved extraction config (compute_precision: what "
                        "precision resolved to, fp32/bf16/fp16; absent in older stores)",
    "package_version": "str: version of this package that wrote the file",
}

#: Store attributes stored as JSON strings (decoded to Python lists/dicts when read).
JSON_ATTRS: tuple[str, ...] = tuple(k for k, v in STORE_ATTRS.items() if v.startswith("json"))

#: Attributes on which all shards of a store must agree (others may differ, e.g. config).
COMPATIBLE_ATTRS: tuple[str, ...] = (
    "schema_version", "T", "fps", "audio_dim", "visual_dim", "text_dim", "text_len",
    "patches", "n_options", "answer_vocab", "type_names", "encoders",
)


def shard_dir(entry_path: str) -> str:
    """``feats.h5`` -> ``feats.shards`` (beside it)."""
    base = entry_path[:-3] if entry_path.endswith(".h5") else entry_path
    return base + SHARD_DIR_SUFFIX


def lock_path(entry_path: str) -> str:
    """``feats.h5`` -> ``feats.h5.lock`` (beside it)."""
    return entry_path + ".lock"


def shard_name(number: int) -> str:
    return f"part-{number:05d}.h5"


def tmp_shard_name(number: int) -> str:
    return f".part-{number:05d}.h5.tmp"


def check_video_id(video_id: str) -> str:
    """Video ids are plain names: no path separators, no ``..``, not empty."""
    if not isinstance(video_id, str) or not video_id or video_id in (".", "..") or ".." in video_id \
            or not VIDEO_ID_RE.match(video_id):
        raise ValueError(f"invalid video id {video_id!r}: must be a plain name "
                         "(no '/', '\\\\', '..' or NUL)")
    return video_id


def resolve_shape(field: Field, attrs: dict) -> tuple[int, ...]:
    """The per-row shape of ``field`` under the given store attributes."""
    return tuple(int(attrs[s]) for s in field.shape)


def field_required(field: Field, attrs: dict) -> bool:
    """Whether a store with these attributes holds ``field`` (optional fields depend on
    ``patches`` / ``n_options``)."""
    if field.required:
        return True
    if field.name == "visual_patches":
        return int(attrs.get("patches", 0)) > 0
    if field.name in ("options", "options_text"):
        return int(attrs.get("n_options", 0)) > 0
    return False


def fields_for(attrs: dict) -> tuple[Field, ...]:
    """Every dataset (video, question and failure fields) a shard of this store holds."""
    return tuple(f for f in VIDEO_FIELDS + QUESTION_FIELDS + FAILURE_FIELDS if field_required(f, attrs))


def get_field(group: str, name: str) -> Field:
    """The schema field ``group/name``; ``KeyError`` naming it if the schema has no such field."""
    for f in VIDEO_FIELDS + QUESTION_FIELDS + FAILURE_FIELDS:
        if f.group == group and f.name == name:
            return f
    raise KeyError(f"the store schema has no field {group}/{name}")
