"""Linear layers for a batch of a few rows, on CPU.

A decode step of the batch multiplies every weight matrix by one token per row: two to
eight rows. On the 2-core CPU this was measured on (MKL through torch 2.13), the
``F.linear`` (``x @ Wᵀ``) of a few rows costs two to three times the single row's, so a
step of two rows took about 1.6 times a step of one, and batching gained little. The
same product computed as ``(W @ xᵀ)ᵀ`` takes MKL's other path, and a step of two or
four rows then costs about what one row's does (the weights are read once either way).
The two differ only in the order the sums are taken (logits agree to ~1e-5).

So the batch's model gets :class:`SkinnyLinear` layers (its ``nn.Linear`` layers, class
swapped, weights untouched), which take that path only inside :func:`rows` (the batch's
decode step, in its own thread) for 2 to :data:`MAX_ROWS` rows of float32 on CPU;
everywhere else, and for one row, they are ``nn.Linear`` exactly.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from . import libs

MAX_ROWS = 16
"""More rows than this go through ``F.linear`` (a prompt's prefill, say)."""

_STATE = threading.local()
_DONE: weakref.WeakSet[Any] = weakref.WeakSet()
_CLASS: type | None = None


def _skinny_class() -> type:
    global _CLASS
    if _CLASS is None:
        torch = libs.torch()

        class SkinnyLinear(torch.nn.Linear):
            """``nn.Linear``, but ``(W @ xᵀ)ᵀ`` for a few rows inside :func:`rows`."""

            def forward(self, x: Any) -> Any:
                if getattr(_STATE, "on", False) and x.dim() >= 2:
                    features = x.shape[-1]
                    count = x.numel() // features if features else 0
                    if 1 < count <= MAX_ROWS:
                        flat = x.reshape(count, features)
                        # contiguous again: the next layers (attention's fast kernel
                        # above all) want rows, not columns
                        out = (self.weight @ flat.t()).t().contiguous()
                        if self.bias is not None:
                            out = out + self.bias
                        return out.reshape(*x.shape[:-1], self.weight.shape[0])
                return torch.nn.functional.linear(x, self.weight, self.bias)

        _CLASS = SkinnyLinear
    return _CLASS


def prepare(model: Any) -> None:
    """Give ``model``'s plain float32 CPU ``nn.Linear`` layers the few-rows path (once).
    Quantized and accelerator layers are left alone."""
    if model in _DONE:
        return
    torch = libs.torch()
    skinny = _skinny_class()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (
            type(module) is torch.nn.Linear
            and weight is not None
            and weight.device.type == "cpu"
            and weight.dtype == torch.float32
        ):
            module.__class__ = skinny
    _DONE.add(model)


@contextlib.contextmanager
def rows() -> Iterator[None]:
    """In this thread, prepared layers take the few-rows path while the block runs."""
    before = getattr(_STATE, "on", False)
    _STATE.on = True
    try:
        yield
    finally:
        _STATE.on = before
