"""Building a model whose weights a file replaces, without drawing its random initial values.

open_clip builds CLIP (151M parameters for ViT-B-32) with random values and only then loads the
checkpoint over them: ~1.8 s of one core's random number generation on the GPU machine, 1.9 s on
the 2-core one, for values nobody sees.  :func:`skip_random_init` skips the random fills (a
:class:`torch.overrides.TorchFunctionMode`, public API); everything else runs as usual, so the
buffers a module computes in its constructor (the text tower's causal mask, which no checkpoint
holds) are right.  Use it only around a build followed by a *strict* load, which replaces every
parameter and persistent buffer (values left by a skipped fill are whatever the memory held).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

#: torch.nn.init's random initialisers (each is dispatched to the mode as a whole)
INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
                  "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")
#: the random in-place fills of tensors, which modules also call directly
TENSOR_FILLS = ("uniform_", "normal_", "random_", "bernoulli_", "exponential_", "cauchy_",
                "log_normal_", "geometric_")
RANDOM_FILLS = frozenset([getattr(torch.nn.init, n) for n in INIT_FUNCTIONS]
                         + [getattr(torch.Tensor, n) for n in TENSOR_FILLS])


class skip_random_init(TorchFunctionMode):
    """Within the block, random in-place fills return their tensor unchanged."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        if func in RANDOM_FILLS:   # torch.nn.init may pass its tensor by keyword
            return args[0] if args else (kwargs or {})["tensor"]
        return func(*args, **(kwargs or {}))
