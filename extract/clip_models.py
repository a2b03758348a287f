"""open_clip at less start-up cost: a model's JSON config read from the installed package without
importing open_clip (:func:`model_config`), and open_clip imported without Hugging Face
transformers and timm for the models that do not use them (:func:`import_open_clip`).  Why and figures:
docs/EXTRACTION.md."""
from __future__ import annotations

import importlib.util
import json
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator

#: keys of a model config's ``text_cfg`` that make open_clip build or tokenize with transformers
HF_TEXT_KEYS = ("hf_model_name", "hf_tokenizer_name")
#: keys of a model config's ``vision_cfg`` that make open_clip build the image tower with timm
TIMM_VISION_KEYS = ("timm_model_name",)


def model_config(model_name: str) -> dict | None:
    """The JSON config of open_clip model ``model_name`` (``ViT-B/32`` = ``ViT-B-32``) from the
    installed package's ``model_configs`` folder, found without importing open_clip (and torch);
    None when there is no such file or it cannot be read."""
    try:
        found = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        return None
    for root in list(found.submodule_search_locations or []) if found else []:
        path = Path(root) / "model_configs" / f"{model_name.replace('/', '-')}.json"
        try:
            if path.is_file():
                data = json.loads(path.read_text(encoding="utf-8"))
                return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None
    return None


def needs_transformers(model_name: str) -> bool:
    """Whether open_clip uses transformers for ``model_name``: its text tower or tokenizer is a
    Hugging Face model, or its config is not one of the installed package's files (a schema name
    such as ``hf-hub:...``, a config added at run time), so it may."""
    cfg = model_config(model_name)
    text = cfg.get("text_cfg") if cfg is not None else None
    if not isinstance(text, dict):
        return True
    return any(text.get(k) for k in HF_TEXT_KEYS)


def needs_timm(model_name: str) -> bool:
    """Whether open_clip builds ``model_name``'s image tower with timm (or may: no config file)."""
    cfg = model_config(model_name)
    vision = cfg.get("vision_cfg") if cfg is not None else None
    if not isinstance(vision, dict):
        return True
    return any(vision.get(k) for k in TIMM_VISION_KEYS)


@contextmanager
def import_refused(name: str) -> Iterator[None]:
    """Within the block, importing module ``name`` (not imported yet) or any of its submodules
    raises ImportError, through Python's documented ``sys.modules[name] = None``; afterwards
    ``sys.modules`` has no entry for it again, so a later import finds the real package.  The
    refusal holds for every thread of the process while the block runs."""
    if name in sys.modules:
        raise ValueError(f"{name} is imported already; it cannot be refused")
    sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def import_open_clip(model_name: str) -> ModuleType:
    """``open_clip``; when this imports it, without transformers and timm where ``model_name``
    uses neither (open_clip imports both at its top when installed, seconds, and does without
    them: ``open_clip.hf_model.transformers`` / ``open_clip.timm_model.timm`` are then None for
    the rest of the process)."""
    optional = (("transformers", needs_transformers), ("timm", needs_timm))
    with ExitStack() as refused:
        if "open_clip" not in sys.modules:
            for name, needed in optional:
                if name not in sys.modules and not needed(model_name):
                    refused.enter_context(import_refused(name))
        import open_clip  # torch, torchvision: seconds; only when an encoder is built
    return open_clip


__all__ = ["model_config", "needs_transformers", "needs_timm", "import_refused",
           "import_open_clip", "HF_TEXT_KEYS", "TIMM_VISION_KEYS"]
