"""The errors of stage one: a run that cannot start or go on, and a video that cannot be used."""
from __future__ import annotations


class ExtractError(RuntimeError):
    """A run that cannot start or go on (bad inputs, incompatible store); the message says why."""


class DecodeError(RuntimeError):
    """A video that cannot be used; the message says which file and why."""


def short_reason(exc: BaseException) -> str:
    """A decoder's error in one line: decord's carry a C++ backtrace (keep the last line before
    it), PyAV's an errno prefix (keep FFmpeg's text)."""
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror[:300]
    kept = []
    for ln in str(exc).splitlines():
        ln = ln.strip()
        if "Stack trace" in ln:
            break
        if ln:
            kept.append(ln)
    return (kept[-1] if kept else type(exc).__name__)[:300]
