"""Find the videos to extract: every video file under a folder, keyed by its file stem."""
from __future__ import annotations

import os
import stat
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


def printable_path(path: str | Path) -> str:
    """``path`` as valid UTF-8 text (undecodable bytes of a file name written as ``\\xNN``), for
    messages and failure records."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def unusable_reason(path: Path) -> str | None:
    """Why ``path`` (found while walking the folder) cannot be a video input, or None."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return "the file name is not valid UTF-8 (rename the file)"
    if path.is_symlink() and not path.exists():
        return f"broken symbolic link (its target {printable_path(os.readlink(path))} does not exist)"
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot stat the file: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, socket or device named like a video)"
    try:
        check_video_id(path.stem)
    except ValueError as exc:
        return f"{exc} (the id is the file stem; rename the file)"
    return None


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


def discover_videos(folder: str | Path, rejected: list[tuple[str, str]] | None = None
                    ) -> list[VideoFile]:
    """Every video (``VIDEO_EXTENSIONS``, any case) under ``folder``, recursively, sorted by id.

    Hidden files (names starting with '.') are skipped; a folder named like a video is searched,
    not read; symbolic links to folders are followed, each folder searched once (no loops).
    A file that cannot be a video input (see :func:`unusable_reason`: a name that is not UTF-8
    or not a valid id, a broken symbolic link, a FIFO/device) or a folder that cannot be listed
    raises :class:`DiscoveryError`, or, when a ``rejected`` list is given, is appended to it as
    ``(path, reason)`` and skipped (the extractor records these as failures and goes on).
    Two files with the same stem (say ``a/x.mp4`` and ``b/x.mkv``) would get the same id: that
    is always an error naming both paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DiscoveryError(f"video folder not found: {folder}")
    found: dict[str, VideoFile] = {}
    walked: set[tuple[int, int]] = set()   # folders already searched (symlink loops, aliases)

    def unlistable(exc: OSError) -> None:
        where = printable_path(exc.filename or folder)
        why = f"{where}: cannot list this folder: {exc.strerror or exc}"
        if rejected is None:
            raise DiscoveryError(why)
        rejected.append((where, why))

    for root, dirs, files in os.walk(folder, onerror=unlistable, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in walked:
            dirs[:] = []
            continue
        walked.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in VIDEO_EXTENSIONS:
                continue
            path = Path(root) / name
            why = unusable_reason(path)
            if why is not None:
                if rejected is None:
                    raise DiscoveryError(f"{printable_path(path)}: {why}")
                rejected.append((printable_path(path), f"{printable_path(path)}: {why}"))
                continue
            vf = stat_video(path)
            if vf.video_id in found:
                raise DiscoveryError(
                    f"duplicate video id {vf.video_id!r}: {found[vf.video_id].path} and {vf.path} "
                    "(the id is the file stem; rename one of them)")
            found[vf.video_id] = vf
    return [found[k] for k in sorted(found)]
