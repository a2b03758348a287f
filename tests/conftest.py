"""Fixtures shared by several test modules: the resume folder and its uninterrupted store, which
test_extract_resume, test_soak and test_extract_dask only read (made once per session)."""
from __future__ import annotations

from pathlib import Path

import pytest

from extract.config import ExtractConfig
from extract.pipeline import extract
from videos import RESUME_OPTS, RESUME_VIDEOS, make_resume_folder


@pytest.fixture(scope="session")
def resume_videos(tmp_path_factory) -> Path:
    """:func:`videos.make_resume_folder` with :data:`videos.RESUME_VIDEOS` videos."""
    return make_resume_folder(tmp_path_factory.mktemp("resume") / "videos", RESUME_VIDEOS)


@pytest.fixture(scope="session")
def resume_reference(resume_videos, tmp_path_factory) -> Path:
    """The uninterrupted store of ``resume_videos`` (:data:`videos.RESUME_OPTS`, in-process):
    ``feats.h5`` with its ``feats.shards`` beside it."""
    out = tmp_path_factory.mktemp("uninterrupted") / "feats.h5"
    s = extract(ExtractConfig(videos=str(resume_videos), out=str(out), **RESUME_OPTS),
                progress=False)
    assert (s.videos_extracted, len(s.failures), s.questions_added) == \
        (RESUME_VIDEOS, 1, RESUME_VIDEOS)
    return out
