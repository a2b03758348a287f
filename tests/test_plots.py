"""Report plots, read back as SVG text: labelled bars (a 0 % bar says so, with its question
count), integer count ticks, the best epoch marked, the confusion matrix said to be
row-normalised."""
from __future__ import annotations

import re

import matplotlib
import pytest

from train.plots import plot_confusion, plot_curvature, plot_training_curves, plot_type_accuracy


@pytest.fixture(autouse=True)
def svg_text():
    with matplotlib.rc_context({"svg.fonttype": "none"}):   # text stays text in the SVG
        yield


def texts(path) -> list[str]:
    return [re.sub(r"<[^>]+>", "", t).strip() for t in
            re.findall(r"<text[^>]*>(.*?)</text>", path.read_text(), flags=re.S)]


def test_type_bars_are_labelled_with_values_and_counts(tmp_path):
    report = {"types": {"Audio/Counting": 0.0, "Audio/Comparative": 50.0, "Visual/Counting": None},
              "groups": {"Audio": 25.0}, "overall": 25.0}
    counts = {"Audio/Counting": 3, "Audio/Comparative": 4, "Audio": 7, "overall": 7}
    t = texts(plot_type_accuracy(report, tmp_path / "t.svg", counts=counts))
    assert "0.0" in t and "50.0" in t                      # the 0 % bar is labelled
    assert "Audio/Counting (n=3)" in t and "[overall] (n=7)" in t, t
    assert not any("Visual/Counting" in x for x in t)     # no questions: no bar


def test_curvature_histogram_counts_have_integer_ticks(tmp_path):
    t = texts(plot_curvature([0.5, 0.51, 0.52], tmp_path / "c.svg"))
    ticks = [x for x in t if re.fullmatch(r"[\d.−-]+", x)]
    assert ticks and any("." not in x for x in ticks)
    y_ticks = [x for x in ticks if re.fullmatch(r"\d+", x)]
    assert y_ticks, t


def test_training_curves_mark_the_best_epoch_and_confusion_title_says_row_normalised(tmp_path):
    rows = [{"epoch": e, "train_loss": 1.0 / e, "ce": 1.0 / e, "align": 0.1, "train_acc": 10.0 * e,
             "val_overall": v, "lr": 1e-4 * e, "best": b}
            for e, v, b in [(1, 20.0, True), (2, 30.0, True), (3, 25.0, False)]]
    assert "best epoch 2" in texts(plot_training_curves(rows, tmp_path / "tc.svg"))
    t = texts(plot_confusion([0, 1, 1], [0, 1, 0], ["a", "b"], tmp_path / "cm.svg", title="r1 test"))
    assert any("row-normalised" in x and x.startswith("r1 test") for x in t), t
