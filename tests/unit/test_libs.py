"""Heavy imports across threads, and failed loads that must not break later ones.

The race needs a fresh process (imports happen once per process) and a busy machine,
so the test starts a subprocess with two CPU-burning processes beside it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tui.engine import ChatRequest, LocalEngine, ModelSpec, loader
from tui.engine.errors import EngineError

ROOT = Path(__file__).resolve().parents[2]
HELLO = [{"role": "user", "content": "Hello there, how are you?"}]

# Five threads released at once in a fresh process: two memory estimates (which build
# the model on the meta device), a 4-bit load, a failing 4-bit load, and settings
# validation (GenerationConfig). Afterwards the process must still load and generate.
RACE = r"""
import json, sys, threading
sys.path.insert(0, sys.argv[3])
from tui.engine import ChatRequest, GenerationSettings, LocalEngine, ModelSpec, loader
from tui.engine.errors import EngineError

good, broken = sys.argv[1], sys.argv[2]
barrier = threading.Barrier(6)
results = {}

def run(name, fn):
    barrier.wait()
    try:
        results[name] = fn()
    except BaseException as exc:
        results[name] = f"{type(exc).__name__}: {exc}"

def failing_load():
    try:
        loader.load(ModelSpec(source=broken, quantization="4bit", device="cpu"))
    except EngineError:
        return "refused"
    return "loaded?!"

jobs = {
    "estimate-4bit": lambda: loader.estimate_for(ModelSpec(source=good, quantization="4bit"))
    and "ok",
    "estimate-fp32": lambda: loader.estimate_for(ModelSpec(source=good)) and "ok",
    "load-4bit": lambda: loader.load(ModelSpec(source=good, quantization="4bit", device="cpu"))
    and "ok",
    "failing-load": failing_load,
    "validate": lambda: GenerationSettings().update(["temperature=0.7", "length_penalty=1.1"])
    or "ok",
    "validate-2": lambda: GenerationSettings().set("top_k=5") and "ok",
}
threads = [threading.Thread(target=run, args=item) for item in jobs.items()]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()

settings = GenerationSettings()
settings.update(["do_sample=false", "max_new_tokens=3", "min_new_tokens=3"])
for name, spec in (
    ("after-fp32", ModelSpec(source=good, dtype="fp32")),
    ("after-4bit", ModelSpec(source=good, quantization="4bit", device="cpu")),
):
    try:
        engine = LocalEngine()
        engine.load(spec)
        results[name] = "ok" if engine.chat(
            ChatRequest([{"role": "user", "content": "Hi"}], settings=settings)
        ).stats.new_tokens == 3 else "no tokens"
    except BaseException as exc:
        results[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(results))
"""


def in_a_fresh_process(script: str, *args: str, env: dict[str, str], timeout: float) -> Any:
    """Run ``script`` in a new interpreter (imports happen once per process); what its
    last line of output says, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory, tiny_llama_dir: Path) -> Path:
    """The tiny llama's config and tokenizer with weights that are not weights."""
    folder = tmp_path_factory.mktemp("broken")
    for path in tiny_llama_dir.iterdir():
        if path.name != "model.safetensors":
            shutil.copy(path, folder / path.name)
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    return folder


def test_heavy_imports_race_on_a_busy_machine(tiny_llama_dir, broken_dir, test_env) -> None:
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        # one run: the old code failed every one (each run imports torch anew, ~40 s here)
        results = in_a_fresh_process(
            RACE, str(tiny_llama_dir), str(broken_dir), str(ROOT), env=test_env, timeout=600
        )
        expected = {name: "ok" for name in results} | {"failing-load": "refused"}
        assert results == expected
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_failed_loads_leave_the_process_able_to_load(
    tiny_llama_dir, tiny_qwen_dir, broken_dir, tmp_path, greedy, monkeypatch
) -> None:
    import bitsandbytes.functional as bnb_functional
    import torch

    settings = greedy("max_new_tokens=3", "min_new_tokens=3")
    unknown = tmp_path / "unknown"
    shutil.copytree(tiny_llama_dir, unknown)
    config = json.loads((unknown / "config.json").read_text())
    config["model_type"] = "no-such-architecture"
    (unknown / "config.json").write_text(json.dumps(config))

    def boom(*args, **kwargs):
        raise RuntimeError("the quantizer failed half-way")

    engine = LocalEngine()
    failures = [
        ModelSpec(source=str(broken_dir)),
        ModelSpec(source=str(broken_dir), quantization="4bit", device="cpu"),
        ModelSpec(source=str(unknown)),
    ]
    for spec in failures:
        with pytest.raises(EngineError):
            engine.load(spec)
    with monkeypatch.context() as patch:  # a 4-bit load that fails inside bitsandbytes
        patch.setattr(bnb_functional, "quantize_4bit", boom)
        with pytest.raises(EngineError) as caught:
            engine.load(ModelSpec(source=str(tiny_llama_dir), quantization="4bit", device="cpu"))
        assert "\n" not in str(caught.value)
    assert engine.loaded is None
    assert torch.get_default_dtype() == torch.float32

    loaded = engine.load(ModelSpec(source=str(tiny_llama_dir), quantization="4bit", device="cpu"))
    assert loaded.spec.quantization == "4bit"
    assert engine.chat(ChatRequest(HELLO, settings=settings)).stats.new_tokens == 3
    other = engine.load(ModelSpec(source=str(tiny_qwen_dir), dtype="fp32"))
    assert other.model.dtype == torch.float32
    assert engine.chat(ChatRequest(HELLO, settings=settings)).stats.new_tokens == 3


def test_libs_import_once_and_fast_path_needs_no_lock() -> None:
    from tui.engine import libs

    transformers = libs.transformers()
    assert libs.imported("torch") and libs.imported("transformers")
    with libs.lock:  # re-entrant: a holder may ask again
        assert libs.transformers() is transformers
    assert libs.torch() is sys.modules["torch"]
    assert "GenerationConfig" in vars(transformers)  # resolved up front, not lazily


def test_estimate_for_waits_for_a_load(tiny_llama_dir) -> None:
    """A memory estimate resolves model classes too, so it waits while a load holds
    the lock, then succeeds."""
    import threading

    from tui.engine import libs

    results: list[object] = []
    with libs.lock:
        thread = threading.Thread(
            target=lambda: results.append(
                loader.estimate_for(ModelSpec(source=str(tiny_llama_dir)))
            )
        )
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive() and not results  # waiting for the lock
    thread.join(timeout=60)
    assert len(results) == 1


def test_settings_validation_does_not_wait_for_a_load() -> None:
    """Validation runs on the UI thread: once transformers is in, it takes no lock, so a
    model load holding the lock (a swap in progress) does not freeze it."""
    import threading

    from tui.engine import GenerationSettings, libs

    libs.transformers()
    done = threading.Event()

    def validate() -> None:
        GenerationSettings().update(["temperature=0.7", "length_penalty=1.1"])
        done.set()

    with libs.lock:  # as a load does for its whole from_pretrained
        thread = threading.Thread(target=validate)
        thread.start()
        assert done.wait(timeout=60)
    thread.join()


FREEZE = r"""
import gc, json, sys, weakref
sys.path.insert(0, sys.argv[1])
from tui.engine import libs

class Node:
    pass

cycle = Node()
cycle.me = cycle  # garbage only the collector can free
dead = weakref.ref(cycle)
del cycle
gc.disable()  # so nothing but the import collects it
before = gc.get_freeze_count()
libs.torch()
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(), "freed": dead() is None}))
"""


def test_the_imported_libraries_are_frozen_and_no_garbage_with_them(test_env) -> None:
    """torch's objects leave the collector's sight once imported (so the collection that
    each model swap runs walks a few objects, not ~370,000), and garbage alive at that
    moment is collected first, not frozen with them (it could never be freed)."""
    found = in_a_fresh_process(FREEZE, str(ROOT), env=test_env, timeout=300)
    assert found["before"] == 0
    assert found["frozen"] > 100_000
    assert found["freed"]
