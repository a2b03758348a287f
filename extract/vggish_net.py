"""VGGish's network with torchvggish's parameter names and construction order, so the release
state_dict loads into it and a seeded random init gives torchvggish's values.  Ours because
importing ``torchvggish.torchvggish`` runs the package's ``__init__``, which imports resampy and
numba (0.5 s of the GPU machine's start-up) for audio resampling that extraction does not use.
``tests/test_encoders.py`` checks it against torchvggish's ``VGG`` (same state_dict, same outputs).
"""
from __future__ import annotations

import torch
from torch import nn

#: torchvggish's ``make_layers`` configuration: conv widths, "M" = 2x2 max pooling
LAYERS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
EMBEDDING = 128


def feature_layers() -> nn.Sequential:
    layers: list[nn.Module] = []
    width = 1
    for v in LAYERS:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(width, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            width = int(v)
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """[N, 1, 96, 64] log-mel patches -> [N, 128] embeddings (before PCA postprocessing)."""

    def __init__(self) -> None:
        features = feature_layers()   # built before the embeddings, as torchvggish does
        super().__init__()
        self.features = features
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(True), nn.Linear(4096, 4096), nn.ReLU(True),
            nn.Linear(4096, EMBEDDING), nn.ReLU(True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)   # [N, 512, 6, 4] -> flattened in (H, W, C) order like the release
        return self.embeddings(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1))
