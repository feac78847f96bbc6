"""torch, transformers and bitsandbytes: imported once, under one lock.

Python's import machinery is not safe for these libraries across threads: while one
thread is half-way through importing transformers (or bitsandbytes, which pulls in
``torch._dynamo`` and ``torch._inductor``), a second thread that imports the same
modules sees them partially initialized and fails (``cannot import name
'GenerationConfig'``, ``Could not import module 'LlamaForCausalLM'``). Worse, the
failure can leave a half-built module in ``sys.modules``, after which no model loads in
that process.

So every engine path asks this module for the libraries before touching them:

* :func:`torch`, :func:`transformers` and :func:`bitsandbytes` import their library
  together with the lazily-imported pieces that loading, estimating, validating and
  generating use, once per process, under :data:`lock`. Once a group is in, the call
  is a dictionary lookup without the lock, so a UI-thread caller (settings validation)
  never waits for a model load.
* The calls that make transformers resolve classes lazily (``AutoConfig`` /
  ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained`` / ``from_config``, a
  GGUF conversion) hold :data:`lock` too: the module of a model class (and the
  quantizer's pieces) are imported the first time they are needed, so those calls must
  not run beside each other or beside a first import. A memory estimate may therefore
  wait for a model load to finish.

Nothing here is imported at module import time.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

lock = threading.RLock()
"""Held for first imports; hold it while calling anything that resolves transformers
classes lazily (re-entrant, so a holder may call the functions below)."""

_groups: dict[str, ModuleType] = {}

# Modules imported with each group. Order matters: torch first, then its compiler
# stack (which transformers' masking utilities and bitsandbytes import part-way through
# their own imports), then transformers' top level and the submodules it would otherwise
# import lazily on first attribute access.
_TORCH = ("torch", "torch._dynamo")
_TRANSFORMERS = (
    "transformers",
    "transformers.utils.logging",
    "transformers.configuration_utils",
    "transformers.modeling_utils",
    "transformers.cache_utils",
    "transformers.masking_utils",
    "transformers.generation",
    "transformers.generation.configuration_utils",
    "transformers.generation.utils",
    "transformers.generation.stopping_criteria",
    "transformers.generation.logits_process",
    "transformers.generation.candidate_generator",
    "transformers.models.auto.configuration_auto",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.integrations.sdpa_attention",
    "transformers.utils.chat_template_utils",  # jinja2, for apply_chat_template
)
# Names read from the top-level ``transformers`` module: each access imports its
# submodule (``_LazyModule.__getattr__``), so they are touched here, under the lock.
_TRANSFORMERS_NAMES = (
    "AutoConfig",
    "AutoModelForCausalLM",
    "AutoTokenizer",
    "DynamicCache",
    "GenerationConfig",
    "GenerationMixin",
    "LogitsProcessorList",
    "PreTrainedModel",
    "StoppingCriteria",
    "StoppingCriteriaList",
)
_BITSANDBYTES = (
    "bitsandbytes",
    "bitsandbytes.nn",
    "transformers.integrations.bitsandbytes",
    "transformers.quantizers.auto",
    "transformers.quantizers.quantizer_bnb_4bit",
    "transformers.quantizers.quantizer_bnb_8bit",
)
_BITSANDBYTES_NAMES = ("BitsAndBytesConfig",)


def _load(group: str, modules: tuple[str, ...], names: tuple[str, ...] = ()) -> ModuleType:
    module = _groups.get(group)
    if module is not None:
        return module
    with lock:
        module = _groups.get(group)
        if module is not None:
            return module
        first = None
        for name in modules:
            imported = importlib.import_module(name)
            first = first or imported
        top = importlib.import_module("transformers") if names else None
        for name in names:
            getattr(top, name)
        assert first is not None
        _groups[group] = first
        _freeze_what_was_imported()
        return first


def _freeze_what_was_imported() -> None:
    """Take every object alive now out of the garbage collector's sight (``gc.freeze``).

    torch and transformers leave ~370,000 objects that live as long as the process. A
    full collection walks all of them: 0.22 s here (AMD EPYC), every time one runs,
    and :func:`tui.engine.memory.release` runs one on each model swap and unload, while
    Python runs them on its own as allocations pile up, streaming included. Frozen,
    they are skipped (the same collection takes under 1 ms). What is frozen is never
    collected, so it is done only here, once per group imported, and nothing frozen
    is garbage, so a collection runs first (once per group, beside an import of
    seconds)."""
    import gc

    gc.collect()
    gc.freeze()


def torch() -> ModuleType:
    """``torch``, with its compiler stack imported (transformers and bitsandbytes use it)."""
    return _load("torch", _TORCH)


def transformers() -> ModuleType:
    """``transformers`` with the auto classes, generation and cache modules imported."""
    torch()
    return _load("transformers", _TRANSFORMERS, _TRANSFORMERS_NAMES)


def generation_config_class() -> type:
    """transformers' ``GenerationConfig``, for validating settings: without torch and
    the rest of transformers (1 s instead of 5 on a first call), and without the lock
    once either this or :func:`transformers` has run, so a UI-thread caller never waits
    for a model load in progress."""
    module = _groups.get("transformers") or _groups.get("generation_config")
    if module is None:
        module = _load("generation_config", ("transformers",), ("GenerationConfig",))
    return module.GenerationConfig


def bitsandbytes() -> ModuleType:
    """``bitsandbytes`` and transformers' bitsandbytes quantizers. Raises what the import
    raised (ImportError, or whatever a broken native library raises)."""
    transformers()
    _quiet_bitsandbytes()
    return _load("bitsandbytes", _BITSANDBYTES, _BITSANDBYTES_NAMES)


def imported(group: str) -> bool:
    """Whether ``group`` ("torch", "transformers", "bitsandbytes") is already in."""
    return group in _groups


def _quiet_bitsandbytes() -> None:
    """bitsandbytes logs a line on every 8-bit matmul on CPU (and a kernel notice on
    import); on a terminal UI that is a flood over the screen."""
    import logging
    import warnings

    for name in ("bitsandbytes", "bitsandbytes.autograd._functions", "bitsandbytes.backends"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"MatMul8bitLt: inputs will be cast")
