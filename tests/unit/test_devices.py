"""Devices that exist, probed once; precisions that are slow on them, with the reason."""

from __future__ import annotations

import threading

import pytest

from tui.engine import devices


@pytest.fixture(autouse=True)
def fresh_cache():
    devices._reset_for_tests()
    yield
    devices._reset_for_tests()


def test_a_cpu_machine_lists_only_the_cpu() -> None:
    found = devices.devices()
    assert [d.name for d in found] == ["cpu"]  # no cuda:0, cuda:1 or mps here
    assert devices.device_names() == ("cpu",)
    assert "cores" in found[0].description
    assert found[0].label.startswith("cpu (")


def test_devices_are_probed_once_across_threads(monkeypatch) -> None:
    calls: list[int] = []
    real = devices._probe_devices

    def counting():
        calls.append(1)
        return real()

    monkeypatch.setattr(devices, "_probe_devices", counting)
    assert devices.peek() == (None, {})
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(devices.devices())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert calls == [1]
    assert devices.peek()[0] is results[0]


def test_the_cpu_probe_runs_and_marks_fp32_fast() -> None:
    timings = devices.cpu_probe()
    assert set(timings) == {"prompt", "decode"}
    assert all(t > 0 for probe in timings.values() for t in probe.values())
    listed = devices.precisions("cpu")
    assert [p.name for p in listed] == ["fp32", "bf16", "fp16", "8bit", "4bit"]
    fp32 = devices.precision("fp32")
    assert not fp32.slow and fp32.available and fp32.label == "fp32"
    for item in listed[1:3]:
        assert item.prompt_ratio is not None and item.prompt_ratio > 0
        assert item.decode_ratio is not None and item.decode_ratio > 0
        worst = max(item.prompt_ratio, item.decode_ratio)
        assert item.slow == (worst >= devices.SLOW_RATIO)
        assert bool(item.reason) == item.slow
    assert devices.precisions("cpu") is listed  # cached


def fake_probe(prompt: dict[str, float], decode: dict[str, float]):
    return lambda: {"prompt": {"fp32": 1.0, **prompt}, "decode": {"fp32": 1.0, **decode}}


def test_a_precision_much_slower_than_fp32_is_marked(monkeypatch) -> None:
    probe = fake_probe({"bf16": 4.5, "fp16": 1.0}, {"bf16": 0.7, "fp16": 6.0})
    monkeypatch.setattr(devices, "cpu_probe", probe)
    bf16, fp16 = devices.precision("bf16"), devices.precision("fp16")
    # this machine's bf16: prompts 4.5x slower, tokens faster
    assert bf16.slow and bf16.slow_prompts_only
    assert bf16.label == "bf16 — slow on long prompts on this CPU"
    assert bf16.reason == (
        "bf16 reads prompts about 4x slower than fp32 on this CPU (no avx512_bf16/amx_bf16), "
        "though it writes tokens about 1.4x as fast: fine for short turns, slow on long "
        "pasted text or a reopened long conversation."
    )
    assert fp16.slow and not fp16.slow_prompts_only
    assert fp16.label == "fp16 — slow on this CPU"
    assert fp16.reason == (
        "fp16 is slow on this CPU (no avx512_fp16/amx_fp16): it writes tokens about 6x "
        "slower than fp32 and reads prompts at about the same speed."
    )


def test_a_precision_as_fast_as_fp32_is_not_marked(monkeypatch) -> None:
    monkeypatch.setattr(
        devices, "cpu_probe", fake_probe({"bf16": 0.6, "fp16": 1.1}, {"bf16": 0.5, "fp16": 1.0})
    )
    for name in ("bf16", "fp16"):
        item = devices.precision(name)
        assert not item.slow and item.label == name and item.reason == ""


def test_without_a_probe_the_cpu_flags_decide(monkeypatch) -> None:
    def broken():
        raise RuntimeError("no probe")

    monkeypatch.setattr(devices, "cpu_probe", broken)
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert not devices.precision("bf16").slow  # native bf16
    assert devices.precision("fp16").slow
    assert devices.precision("fp16").reason == (
        "fp16 is slow on this CPU (no avx512_fp16/amx_fp16)."
    )


@pytest.mark.parametrize(("capability", "slow"), [((7, 5), True), ((8, 0), False)])
def test_bf16_on_an_older_gpu_is_marked(monkeypatch, capability, slow) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: capability)
    bf16 = devices.precision("bf16", "cuda:0")
    assert bf16.slow is slow
    assert bf16.label == ("bf16 — slow on cuda:0" if slow else "bf16")
    assert not devices.precision("fp16", "cuda:0").slow
