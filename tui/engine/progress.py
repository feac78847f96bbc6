"""Route transformers' and huggingface_hub's tqdm bars into a ``(fraction, stage)`` callback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

Progress = Callable[[float, str], None]


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


class ProgressBar:
    """A tqdm stand-in: counts and reports, draws nothing.

    ``span`` maps this bar's 0..1 onto a slice of the overall load (e.g. weights are
    0.2..0.9 of the whole), so several bars make one monotonic progress value.
    """

    def __init__(
        self,
        iterable: Any = None,
        *,
        report: Progress,
        span: tuple[float, float],
        desc: str | None = None,
        total: float | None = None,
        initial: float = 0,
        **_kwargs: Any,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.n = initial
        self.desc = desc or "loading"
        self._report = report
        self._span = span
        self._last = -1

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.update(1)

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n or 0
        if self.total:
            low, high = self._span
            fraction = min(1.0, self.n / self.total)
            percent = int(fraction * 100)
            if percent != self._last:  # at most 101 reports per bar
                self._last = percent
                self._report(low + (high - low) * fraction, self.desc)

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:  # set_description, refresh, set_postfix ...
        return _noop


def make_bar_class(report: Progress, span: tuple[float, float]) -> type:
    class _Bar(ProgressBar):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, report=report, span=span, **kwargs)

    return _Bar


@contextlib.contextmanager
def transformers_bars(report: Progress, span: tuple[float, float]) -> Iterator[None]:
    """Capture the bars transformers draws while loading weights (5.x ``set_tqdm_hook``)."""
    from . import libs

    hf_logging = libs.transformers().utils.logging

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    if set_hook is None:
        yield
        return
    bar = make_bar_class(report, span)
    previous = set_hook(lambda _factory, args, kwargs: bar(*args, **kwargs))
    try:
        yield
    finally:
        set_hook(previous)


@contextlib.contextmanager
def gguf_bars(report: Progress, span: tuple[float, float]) -> Iterator[None]:
    """Capture the de-quantization bar of transformers' GGUF reader (a plain tqdm)."""
    from . import libs

    try:
        with libs.lock:
            from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    previous = getattr(gguf_utils, "tqdm", None)
    gguf_utils.tqdm = make_bar_class(report, span)
    try:
        yield
    finally:
        gguf_utils.tqdm = previous
