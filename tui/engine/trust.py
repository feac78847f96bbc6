"""What a file may ask of a model loader, and what only the user may grant.

A value read from a file (a reply's snapshot, an import, ``state.toml``, ``config.toml``)
describes how a model was loaded; it never authorizes anything that widens what runs
on this machine. :func:`from_file` turns such a table into a :class:`Recorded` spec
that is safe to load as it is:

* ``trust_remote_code`` is off. Only ``--trust-remote-code`` on the command line, or a
  confirmation in the app that names the folder and says its code will run, turns it
  on (:func:`with_remote_code`).
* ``chat_template_file`` is dropped: a file names no other file to read.
* ``attn_implementation`` is one of the fixed local values (transformers 5 can fetch
  attention kernels from the Hub by name); any other value becomes ``auto``.
* A Hub id that is not on this machine is not downloaded unless the user asks at that
  moment (:func:`needs_download`, asked by the caller; the loader takes
  ``allow_download``).

Each refused value is said in one sentence (:attr:`Recorded.refused`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EngineError
from .spec import ATTN_IMPLEMENTATIONS, ModelSpec

MAX_SOURCE_BYTES = 4096
"""A model source longer than this is not a model anyone has (paths are at most 4,096
bytes on Linux); refused before it reaches the file system."""


@dataclass(frozen=True)
class Recorded:
    """A model spec read from a file, made safe to load."""

    spec: ModelSpec
    refused: tuple[str, ...] = ()
    """One sentence per recorded value that was not taken."""
    remote_code: bool = False
    """The file asked for ``trust_remote_code`` (refused; the user may grant it)."""

    @property
    def source(self) -> str:
        return self.spec.source


def from_file(data: Any, *, what: str = "this reply") -> Recorded:
    """The spec a stored table describes, with nothing that widens what runs.

    ``what`` names the file's part in the sentences (``"this reply"``,
    ``"state.toml's last model"``). Raises :class:`EngineError` (one sentence) when the
    table names no usable model."""
    if not isinstance(data, Mapping) or not isinstance(data.get("source"), str):
        raise EngineError(f"{_capital(what)} does not say which model made it.")
    source = data["source"]
    if not source.strip() or len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise EngineError(f"{_capital(what)} names no usable model.")
    values = {k: v for k, v in data.items() if isinstance(k, str)}
    refused: list[str] = []
    remote_code = values.pop("trust_remote_code", False) is True
    if remote_code:
        refused.append(
            f"{_capital(what)} was made with trust_remote_code; chat-tui loads it without "
            "(the model's own code runs only when you allow it)."
        )
    template = values.pop("chat_template_file", None)
    if isinstance(template, str) and template:
        refused.append(
            f"{_capital(what)} names a chat template file; a file names no other file to read, "
            "so the model's own template is used."
        )
    attn = values.get("attn_implementation")
    if attn is not None and attn not in ATTN_IMPLEMENTATIONS:
        values.pop("attn_implementation")
        refused.append(
            f"{_capital(what)} asks for the attention implementation "
            f"{_quoted(attn)}, which is not one of chat-tui's local ones; using auto."
        )
    try:
        spec = ModelSpec.from_dict(values)
    except EngineError as exc:
        raise EngineError(f"{_capital(what)} names an unusable model: {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise EngineError(
            f"{_capital(what)} names an unusable model ({type(exc).__name__})."
        ) from None
    return Recorded(spec, tuple(refused), remote_code)


def with_remote_code(spec: ModelSpec) -> ModelSpec:
    """``spec`` with its folder's own code allowed to run: call only on the user's word
    (``--trust-remote-code``, or a confirmation naming :func:`code_location`)."""
    return spec.with_changes(trust_remote_code=True)


def code_location(spec: ModelSpec) -> str:
    """Where the code that would run lives, for the question that asks."""
    path = Path(spec.source).expanduser()
    if spec.is_default:
        return "the bundled model"
    if path.exists():
        return str(path.resolve())
    return f"the Hub repository {spec.source}"


def needs_download(spec: ModelSpec) -> bool:
    """Whether loading ``spec`` would download it: a Hub id that is not in the local
    cache. Nothing is asked of the network."""
    from .loader import on_this_machine

    return not on_this_machine(spec)


def same_model(a: ModelSpec, b: ModelSpec) -> bool:
    """The same weights: the same source and revision (precision may differ)."""
    return a.source == b.source and (a.revision or None) == (b.revision or None)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _quoted(value: Any) -> str:
    from ..safe_text import one_line

    return repr(one_line(str(value))[:80])
