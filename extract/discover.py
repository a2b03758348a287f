"""Find the videos to extract: every video file under a folder, keyed by its file stem."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from store.schema import check_video_id

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


class DiscoveryError(ValueError):
    """The video folder is missing, or two videos would get the same id."""


@dataclass(frozen=True)
class VideoFile:
    """One input video: its id (the file stem), path, and size/mtime (for resume)."""

    video_id: str
    path: str
    size: int
    mtime: float


def stat_video(path: str | Path) -> VideoFile:
    """A :class:`VideoFile` for one path (id = stem, validated)."""
    path = Path(path)
    st = path.stat()
    video_id = path.stem
    try:
        check_video_id(video_id)
    except ValueError as exc:
        raise DiscoveryError(f"{path}: {exc}") from None
    return VideoFile(video_id, str(path), int(st.st_size), float(st.st_mtime))


def discover_videos(folder: str | Path) -> list[VideoFile]:
    """Every video (``VIDEO_EXTENSIONS``, any case) under ``folder``, recursively, sorted by id.

    Hidden files (names starting with '.') are skipped.  Two files with the same stem (say
    ``a/x.mp4`` and ``b/x.mkv``) would get the same id: that is an error naming both paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DiscoveryError(f"video folder not found: {folder}")
    found: dict[str, VideoFile] = {}
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in VIDEO_EXTENSIONS:
                continue
            vf = stat_video(Path(root) / name)
            if vf.video_id in found:
                raise DiscoveryError(
                    f"duplicate video id {vf.video_id!r}: {found[vf.video_id].path} and {vf.path} "
                    "(the id is the file stem; rename one of them)")
            found[vf.video_id] = vf
    return [found[k] for k in sorted(found)]
