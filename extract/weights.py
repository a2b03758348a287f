"""Where encoder weights come from, and how the store names them.

A weight spec is one of

* ``default``: the published weights — open_clip's ``openai`` tag for CLIP, torchvggish's release
  file for VGGish — taken from the Hugging Face / torch hub cache, or downloaded when the network
  is reachable.  With neither, resolving fails *at once* (no retry loops) with a message saying
  how to pass a local file.
* an open_clip pretrained tag (``laion2b_s34b_b79k``, ...): likewise, CLIP only.
* a local file (``.pt``/``.pth``/``.bin`` state_dict, or ``.safetensors``).
* ``random`` (seeded with the config's ``seed``) or ``random:<seed>``: ``torch.manual_seed(seed)``
  right before the model is constructed, for tests and the demo.

The identity recorded in the store (``attrs['encoders']``) is ``sha256:<hex>`` for a file,
``<tag>@sha256:<hex>`` for a cached/downloaded tag, and ``random:<seed>``.
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from .clip_models import import_open_clip

if TYPE_CHECKING:  # torch loads lazily: `extract` starts its decode workers before importing it
    import torch

VGGISH_URL = ("https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
              "vggish-10086976.pth")
VGGISH_PCA_URL = ("https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
                  "vggish_pca_params-970ea276.pth")
OFFLINE_ENV = ("SHMAMBA_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


class WeightsError(RuntimeError):
    """Weights cannot be found or loaded; the message says what to pass instead."""


class ResolvedWeights:
    """A weight spec resolved to something loadable: kind is 'random', 'file' or 'tag'.  A file's
    ``identity`` (``sha256:<hex>``) may be given as (prefix, future digest): the file is hashed in
    a background thread from resolution on, while the model is built; reading it waits."""

    __slots__ = ("kind", "_identity", "path", "seed", "tag")

    def __init__(self, kind: str, identity: "str | tuple[str, Future[str]]", path: str | None = None,
                 seed: int | None = None, tag: str | None = None):
        self.kind, self._identity, self.path, self.seed, self.tag = kind, identity, path, seed, tag

    @property
    def identity(self) -> str:
        if not isinstance(self._identity, str):
            prefix, digest = self._identity
            self._identity = prefix + digest.result()
        return self._identity

    def _fields(self) -> tuple:
        return (self.kind, self.identity, self.path, self.seed, self.tag)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResolvedWeights) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __reduce__(self) -> tuple:   # pickled (dask) with its identity, not the future
        return (ResolvedWeights, (self.kind, self.identity, self.path, self.seed, self.tag))

    def __repr__(self) -> str:
        return (f"ResolvedWeights(kind={self.kind!r}, identity={self.identity!r}, path={self.path!r}, "
                f"seed={self.seed!r}, tag={self.tag!r})")


_SHA_CACHE: dict[tuple[str, int, float], "Future[str]"] = {}
_SHA_LOCK = threading.Lock()
_HASHERS: ThreadPoolExecutor | None = None


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:   # hashlib and reads release the GIL: this runs beside the build
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def sha256_soon(path: str | Path) -> "Future[str]":
    """The hex sha256 of a file, computed in a background thread (once per path/size/mtime
    within the process; a failed hash is not kept)."""
    global _HASHERS
    path = os.path.abspath(path)
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime)
    with _SHA_LOCK:
        fut = _SHA_CACHE.get(key)
        if fut is None or (fut.done() and fut.exception() is not None):
            if _HASHERS is None:
                _HASHERS = ThreadPoolExecutor(2, thread_name_prefix="sha256")
            fut = _SHA_CACHE[key] = _HASHERS.submit(_sha256, path)
    return fut


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file (cached per path/size/mtime within the process)."""
    return sha256_soon(path).result()


def offline_requested() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in OFFLINE_ENV)


def network_available(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to ``host``?  Bounded by ``timeout`` in total, DNS included
    (the look-up runs in a daemon thread so a stuck resolver cannot hang the run)."""
    if offline_requested():
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def parse_random(spec: str, seed: int) -> int | None:
    """``random`` -> seed, ``random:<n>`` -> n, anything else -> None."""
    if spec == "random":
        return int(seed)
    if spec.startswith("random:"):
        try:
            return int(spec.split(":", 1)[1])
        except ValueError:
            raise WeightsError(f"bad weight spec {spec!r}: expected random:<integer seed>") from None
    return None


def _file_weights(spec: str, what: str) -> ResolvedWeights | None:
    p = Path(spec).expanduser()
    if p.is_file():
        return ResolvedWeights("file", ("sha256:", sha256_soon(p)), path=str(p))
    if p.suffix.lower() in WEIGHT_SUFFIXES or os.sep in spec:
        raise WeightsError(f"{what} weight file not found: {spec}")
    return None


def _no_weights_message(what: str, looked: list[str], flag: str, url: str) -> str:
    where = "\n  ".join(looked) if looked else "(no cache location)"
    return (f"{what} weights are not in the local cache and the network is unreachable "
            f"(or offline mode is set).\nLooked in:\n  {where}\n"
            f"Download them on a machine with network ({url}) and pass the file with "
            f"{flag} /path/to/file, or use {flag} random for a test run.")


def hf_cache_dir() -> str:
    """The Hugging Face hub cache, read from the environment now (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def clip_cache_dir() -> str:
    """open_clip's download folder for URL weights (its default, ``~/.cache/clip``)."""
    return os.path.join(os.path.expanduser("~"), ".cache", "clip")


def clip_tag_cache(model_name: str, tag: str) -> tuple[str | None, list[str]]:
    """(cached file or None, the places looked in) for an open_clip pretrained tag."""
    open_clip = import_open_clip(model_name)

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    looked: list[str] = []
    hf = cfg.get("hf_hub", "")
    if hf:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub is an open_clip dependency
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

            repo, filename = os.path.split(hf)  # trailing '/' = the default file name
            filename = filename or HF_WEIGHTS_NAME
            names = [filename]
            if filename == HF_WEIGHTS_NAME:
                names.insert(0, HF_SAFE_WEIGHTS_NAME)
            elif filename.endswith((".bin", ".pth")):
                names.insert(0, filename[:-4] + ".safetensors")
            cache_dir = hf_cache_dir()
            for name in names:
                looked.append(f"huggingface cache {cache_dir}: {repo}/{name}")
                hit = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit, looked
    url = cfg.get("url", "")
    if url:
        local = os.path.join(clip_cache_dir(), os.path.basename(url))
        looked.append(local)
        if os.path.isfile(local):
            return local, looked
    return None, looked


def resolve_clip_weights(model_name: str, spec: str, seed: int = 0) -> ResolvedWeights:
    """Resolve ``--clip-weights`` for ``model_name`` (see the module doc)."""
    open_clip = import_open_clip(model_name)

    spec = (spec or "default").strip()
    rnd = parse_random(spec, seed)
    if rnd is not None:
        return ResolvedWeights("random", f"random:{rnd}", seed=rnd)
    found = _file_weights(spec, "CLIP")
    if found is not None:
        return found
    name = model_name.replace("/", "-")
    tags = open_clip.list_pretrained_tags_by_model(name)
    tag = spec
    if spec == "default":
        if not tags:
            raise WeightsError(f"open_clip has no pretrained weights for {model_name!r}; pass "
                               "--clip-weights /path/to/file or --clip-weights random")
        tag = "openai" if "openai" in tags else tags[0]
    if tag not in tags:
        raise WeightsError(f"--clip-weights {spec!r}: not a file, 'random', or a pretrained tag of "
                           f"{model_name!r} (tags: {', '.join(tags) or 'none'})")
    path, looked = clip_tag_cache(name, tag)
    if path is None:
        cfg = open_clip.get_pretrained_cfg(name, tag)
        hosts = (["huggingface.co"] if cfg.get("hf_hub") else []) + \
                ([cfg["url"].split("/")[2]] if cfg.get("url") else [])
        if not any(network_available(h) for h in hosts):
            raise WeightsError(_no_weights_message(
                f"CLIP {model_name} '{tag}'", looked, "--clip-weights",
                cfg.get("url") or f"https://huggingface.co/{cfg.get('hf_hub')}"))
        from open_clip.pretrained import download_pretrained

        try:
            path = download_pretrained(cfg)
        except Exception as exc:
            raise WeightsError(f"downloading CLIP {model_name} '{tag}' failed: {exc}; pass "
                               "--clip-weights /path/to/file") from None
    return ResolvedWeights("tag", (f"{tag}@sha256:", sha256_soon(path)), path=str(path), tag=tag)


def _hub_file(url: str, what: str, flag: str) -> ResolvedWeights:
    """A torch-hub release file: from the hub cache, downloaded when online, else fail now."""
    import torch

    local = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if not os.path.isfile(local):
        if not network_available(url.split("/")[2]):
            raise WeightsError(_no_weights_message(what, [local], flag, url))
        try:
            torch.hub.download_url_to_file(url, local, progress=False)
        except Exception as exc:
            raise WeightsError(f"downloading {what} from {url} failed: {exc}; pass {flag} "
                               "/path/to/file") from None
    return ResolvedWeights("file", ("sha256:", sha256_soon(local)), path=local, tag="default")


def resolve_vggish_weights(spec: str, seed: int = 0) -> ResolvedWeights:
    """Resolve ``--vggish-weights``: default (hub cache / network), a file, or random."""
    spec = (spec or "default").strip()
    rnd = parse_random(spec, seed)
    if rnd is not None:
        return ResolvedWeights("random", f"random:{rnd}", seed=rnd)
    if spec == "default":
        return _hub_file(VGGISH_URL, "VGGish", "--vggish-weights")
    found = _file_weights(spec, "VGGish")
    if found is None:
        raise WeightsError(f"--vggish-weights {spec!r}: not a file, 'default' or 'random'")
    return found


def resolve_vggish_pca(spec: str) -> ResolvedWeights:
    """PCA parameters for VGGish post-processing: 'default' (hub cache / network) or a file."""
    spec = (spec or "default").strip()
    if spec == "default":
        return _hub_file(VGGISH_PCA_URL, "VGGish PCA parameters", "--vggish-pca")
    found = _file_weights(spec, "VGGish PCA")
    if found is None:
        raise WeightsError(f"--vggish-pca {spec!r}: not a file or 'default'")
    return found


def load_state_dict_file(path: str | Path) -> "dict[str, torch.Tensor]":
    """A state_dict from ``.safetensors`` or a torch file (``weights_only``); a top-level
    ``state_dict``/``model`` entry and a ``module.`` prefix are unwrapped."""
    import torch

    path = str(path)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            try:   # mapped, not read: the load_state_dict copy is the only pass over the data
                sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:   # files in torch's legacy (pre-zip) format cannot be mapped
                sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read weights: {exc}") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd:
        raise WeightsError(f"{path}: not a state_dict (got {type(sd).__name__})")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def save_weights(model: "torch.nn.Module", path: str | Path) -> Path:
    """Save ``model.state_dict()`` to ``path`` (safetensors for ``.safetensors``, else torch)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, str(path))
    return path
