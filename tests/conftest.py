"""Shared fixtures: an offline environment, the real tokenizer, and tiny random models.

Test modules import torch and transformers inside fixtures and tests, never at module
top, so nothing reads ``HF_HUB_OFFLINE`` before :func:`test_env` has set it.

Every tiny model is saved with ``save_pretrained`` (weights and the bundled model's
real tokenizer files) and loaded through the same path users take:
``LocalEngine.load(ModelSpec(source=folder))``.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import run_cli
from tui.engine import GenerationSettings, LocalEngine, ModelSpec

if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    # One torch thread in each of the three workers (and in what they start: the CLI,
    # served apps). With torch's default of one per core, the three workers' OpenMP
    # helpers outnumber the two cores; libgomp then puts every helper to sleep after each
    # product and wakes it for the next (see tui.engine.threads), and the model tests
    # spent a quarter of their CPU on that: tests/unit's five model-heavy files took 47 s
    # and 86 CPU-s on three workers, 36 s and 65 CPU-s with this. libgomp reads it when
    # torch loads, so it is set before anything imports torch. The tests that run alone
    # (``-m timing``) keep the default, as users do.
    os.environ["OMP_NUM_THREADS"] = "1"

GC_YOUNG = 100_000
"""Allocations between collections of the youngest generation (Python's default: 700).
A Pilot test keeps most of what it allocates alive until its app ends, so each young
collection walks live objects: tests/ui on three workers took 168 s and 296 CPU-s with
20,000, 154 s and 267 CPU-s with 100,000 (300,000: 150 s and 258 CPU-s, within the
noise)."""

SYSTEM_REJECTING_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}"
    "{% endif %}"
    "{% for message in messages %}"
    "<start_of_turn>{{ message['role'] }}\n{{ message['content'] }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>assistant\n{% endif %}"
)


def _offline_with_the_shared_cache() -> pytest.MonkeyPatch:
    """Offline and quiet, converted models in the shared cache unless the caller chose
    one; ``undo()`` the returned patch to put the environment back."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("TRANSFORMERS_VERBOSITY", "error")
    if not os.environ.get("CHAT_TUI_CACHE_DIR"):
        # converted models (the bundled GGUF as safetensors) are shared by every run and
        # every xdist worker of this checkout: converted once, never twice
        patch.setenv("CHAT_TUI_CACHE_DIR", str(SHARED_CACHE))
    return patch


@pytest.fixture(scope="session", autouse=True)
def test_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Offline, quiet, and every chat-tui folder in a temp dir (except a cache dir the
    caller chose, so a warm converted default model can be reused between runs).

    The cyclic garbage collector runs less often than Python's default (see
    :data:`GC_YOUNG`): the UI tests allocate fast, and spent a fifth of their CPU time
    in collections. (Full collections no longer walk torch's and transformers' objects:
    :mod:`tui.engine.libs` freezes them once imported.)

    Yields the environment for CLI subprocesses."""
    gc.set_threshold(GC_YOUNG, 20, 20)
    patch = _offline_with_the_shared_cache()
    patch.setenv("TOKENIZERS_PARALLELISM", "false")
    patch.setenv("CHAT_TUI_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    patch.setenv("CHAT_TUI_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    patch.setenv("CHAT_TUI_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    # where transformers copies a model's own code before importing it (never ~/.cache)
    patch.setenv("HF_MODULES_CACHE", str(tmp_path_factory.mktemp("hf-modules")))

    from huggingface_hub import constants

    # huggingface_hub reads HF_HUB_OFFLINE once, at import: fail loudly if something
    # imported it before this fixture ran, rather than let a test reach for the network.
    assert constants.HF_HUB_OFFLINE, "huggingface_hub was imported before HF_HUB_OFFLINE=1"
    yield dict(os.environ)
    patch.undo()


@pytest.fixture
def cli(test_env: dict[str, str]):
    """``cli(*args, stdin="", env={})``: the command line in this process (see
    :mod:`tests.support`); the result has ``returncode``, ``stdout`` and ``stderr``."""
    return run_cli


TIMING = (
    "tests/flows/test_hangup.py",  # a hangup in a pty: gone within seconds
    "tests/remote/test_untrusted_server.py",  # Esc within half a second in every phase
    "tests/store/test_crash.py",  # kills that must land while the writer writes
    "tests/store/test_cli_sessions.py::test_sig",  # SIGTERM/SIGHUP mid-reply
    "tests/unit/test_libs.py::test_heavy_imports_race_on_a_busy_machine",  # burns both cores
)
"""Tests that hold a promise about time. ``make test`` runs them alone, after the rest
has run on three workers, so a busy neighbour cannot make a promise look broken."""


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (its hook runs first otherwise)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(TIMING):
            item.add_marker(pytest.mark.timing)
        elif item.nodeid.startswith("tests/remote/"):
            # one worker starts the session's `transformers serve`, not each of them
            item.add_marker(pytest.mark.xdist_group("remote"))


SHARED_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "tests"
"""The tests' converted-model cache (git-ignored; delete it to convert again)."""

HANG_LIMIT = 600  # seconds one test may take before the run is stopped with a traceback


@pytest.fixture(autouse=True)
def stop_a_hung_test() -> Iterator[None]:
    """A test that hangs (a Pilot wait that never returns) ends the run with every
    thread's traceback instead of holding CI until its own limit."""
    import faulthandler

    faulthandler.dump_traceback_later(HANG_LIMIT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _convert_bundled_model() -> Path:
    """The bundled model converted into ``CHAT_TUI_CACHE_DIR``, by this process or by
    another one that held the lock first."""
    from filelock import FileLock

    from tui.engine import default_model

    cache = Path(os.environ["CHAT_TUI_CACHE_DIR"])
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / ".convert.lock")):
        return default_model.ensure_converted()


@pytest.hookimpl(tryfirst=True)  # before xdist starts its workers
def pytest_sessionstart(session: pytest.Session) -> None:
    """With xdist, the controller converts the bundled model before any worker starts
    (once per checkout; a no-op when it is there). Left to the workers, the first to
    need it converted under load while the others that needed it waited on the lock,
    and each of them compiled the model-loading modules of a fresh install again."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    patch = _offline_with_the_shared_cache()
    try:
        _convert_bundled_model()
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def default_model_dir(test_env: dict[str, str]) -> Path:
    """The bundled SmolLM2-135M-Instruct as a safetensors folder, converted once per
    checkout into the shared test cache (see :func:`pytest_sessionstart`)."""
    return _convert_bundled_model()


@pytest.fixture(scope="session")
def tokenizer(default_model_dir: Path) -> Any:
    """The real tokenizer of the bundled model (byte-level BPE, ChatML template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


def _save_tokenizer(source: Path, folder: Path, chat_template: Any = ...) -> None:
    """Save the real tokenizer files into ``folder``, optionally replacing the template
    (``None`` saves a tokenizer without one, like a base model's)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    if chat_template is not ...:
        tok.chat_template = chat_template
    tok.save_pretrained(folder)
    if chat_template is None:
        for leftover in folder.glob("chat_template.*"):
            leftover.unlink()
        assert AutoTokenizer.from_pretrained(folder).chat_template is None


def _tiny_config(kind: str, tokenizer: Any, **overrides: Any) -> Any:
    from transformers import LlamaConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[kind]
    values = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        # Large random weights give peaked logits: greedy decoding has no near-ties, so
        # results that should be equal (cache reuse, speculation) are exactly equal.
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    values.update(overrides)
    return cls(**values)


def _build(kind: str, tokenizer: Any, default_model_dir: Path, folder: Path, seed: int) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_tiny_config(kind, tokenizer))
    model.save_pretrained(folder)
    _save_tokenizer(default_model_dir, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tokenizer, default_model_dir) -> Path:
    return _build("llama", tokenizer, default_model_dir, tmp_path_factory.mktemp("llama"), 0)


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory, tokenizer, default_model_dir) -> Path:
    return _build("qwen2", tokenizer, default_model_dir, tmp_path_factory.mktemp("qwen2"), 1)


def _copy_weights(source: Path, folder: Path) -> None:
    import shutil

    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(source / name, folder / name)


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory, tiny_llama_dir, default_model_dir) -> Path:
    """The tiny llama with a tokenizer that has no chat template (a base model)."""
    folder = tmp_path_factory.mktemp("base")
    _copy_weights(tiny_llama_dir, folder)
    _save_tokenizer(default_model_dir, folder, chat_template=None)
    return folder


@pytest.fixture(scope="session")
def no_system_dir(tmp_path_factory, tiny_llama_dir, default_model_dir) -> Path:
    """The tiny llama with a Gemma-style template that raises on the system role."""
    folder = tmp_path_factory.mktemp("nosystem")
    _copy_weights(tiny_llama_dir, folder)
    _save_tokenizer(default_model_dir, folder, chat_template=SYSTEM_REJECTING_TEMPLATE)
    return folder


@pytest.fixture(scope="session")
def bigram_dir(tmp_path_factory, tokenizer, default_model_dir) -> Path:
    """A base model (no chat template) whose greedy output is a known loop.

    One layer whose attention and MLP write nothing, so the logits depend on the
    current token alone, and an LM head built so that ``:`` -> `` Paris`` -> ``\\n`` ->
    ``User`` -> ``:``. On the fallback transcript (which ends in ``Assistant:``) it
    answers `` Paris`` and then writes the ``\\nUser:`` stop string.
    """
    import torch
    from transformers import AutoModelForCausalLM

    def token(text: str) -> int:
        (only,) = tokenizer(text, add_special_tokens=False)["input_ids"]
        return only

    colon, paris, newline, user = token(":"), token(" Paris"), token("\n"), token("User")
    torch.manual_seed(2)
    config = _tiny_config("llama", tokenizer, num_hidden_layers=1, tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = model.lm_head.weight
        head.zero_()
        embed = model.model.embed_tokens.weight
        for current, following in (
            (colon, paris),
            (paris, newline),
            (newline, user),
            (user, colon),
        ):
            head[following] += 10 * embed[current] / embed[current].norm()
    folder = tmp_path_factory.mktemp("bigram")
    model.save_pretrained(folder)
    _save_tokenizer(default_model_dir, folder, chat_template=None)
    return folder


@pytest.fixture(scope="session")
def qwen3_thinking_dir(tmp_path_factory, default_model_dir) -> Path:
    """A Qwen3-style reasoning model (``<think>`` tokens, ``enable_thinking``, no
    ``response_template``: transformers serve's qwen3 fallback splits it) that writes
    ``<think> so France</think>\\n\\n Paris.``; see :mod:`tests.thinking_models`."""
    from tests.thinking_models import build_qwen3

    return build_qwen3(default_model_dir, tmp_path_factory.mktemp("qwen3-thinking"))


@pytest.fixture(scope="session")
def prefill_thinking_dir(tmp_path_factory, default_model_dir) -> Path:
    """A reasoning model whose template opens ``<think>`` itself and whose tokenizer
    ships a ``response_template``; it writes `` the capital is</think>\\n\\n Paris.``
    with the closing tag over three tokens; see :mod:`tests.thinking_models`."""
    from tests.thinking_models import build_prefill

    return build_prefill(default_model_dir, tmp_path_factory.mktemp("prefill-thinking"))


@pytest.fixture(scope="session")
def short_context_dir(tmp_path_factory, tiny_llama_dir: Path) -> Path:
    """The tiny llama (RoPE: no position weights) with a 512-token context."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("ctx512")
    for path in tiny_llama_dir.iterdir():
        shutil.copy(path, folder / path.name)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 512
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="session")
def llama_engine(tiny_llama_dir: Path) -> LocalEngine:
    """A shared engine on the tiny llama; tests using it must not change its settings."""
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(tiny_llama_dir), dtype="fp32"))
    return engine


@pytest.fixture(scope="session")
def qwen_engine(tiny_qwen_dir: Path) -> LocalEngine:
    engine = LocalEngine()
    engine.load(ModelSpec(source=str(tiny_qwen_dir), dtype="fp32"))
    return engine


@pytest.fixture(scope="session")
def greedy() -> Any:
    """``greedy("max_new_tokens=8")``: greedy decoding settings plus the assignments."""

    def make(*assignments: str) -> GenerationSettings:
        settings = GenerationSettings()
        settings.update(["do_sample=false", *assignments])
        return settings

    return make


_EVIL_CONFIG = """
from pathlib import Path

from transformers import LlamaConfig

MARKER = Path({marker!r})
MARKER.write_text("configuration_evil.py ran")  # at import: the code ran


class EvilConfig(LlamaConfig):
    model_type = "evil_llama"

    def __init__(self, **kwargs):
        MARKER.write_text("EvilConfig was built")
        super().__init__(**kwargs)
"""


@pytest.fixture(scope="session")
def evil_model_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    """The tiny llama as a model that ships its own code: loading it with
    ``trust_remote_code`` imports ``configuration_evil.py``, which writes
    ``evil_model_dir.parent / "MARKER"``. Tests assert that the marker never appears."""
    import json

    root = tmp_path_factory.mktemp("evil")
    folder = root / "model"
    folder.mkdir()
    for path in tiny_llama_dir.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "evil_llama"
    config["architectures"] = ["LlamaForCausalLM"]
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForCausalLM": "configuration_evil.EvilConfig",
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_evil.py").write_text(_EVIL_CONFIG.format(marker=str(root / "MARKER")))
    return folder


def evil_marker(evil_model_dir: Path) -> Path:
    return evil_model_dir.parent / "MARKER"
