"""The side panel: model, precision, device, attention, system prompt and generation
settings, the memory estimate against what is free, and Apply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from .. import safe_text
from ..engine.spec import ModelSpec
from .select import SafeSelect

PRECISIONS = [
    ("auto", "auto"),
    ("bf16", "bf16"),
    ("fp16", "fp16"),
    ("fp32", "fp32"),
    ("8-bit (bitsandbytes)", "8bit"),
    ("4-bit nf4 (bitsandbytes)", "4bit"),
]
PRECISION_NAMES = dict((value, label) for label, value in PRECISIONS)
# until the hardware is probed (off the UI thread, once torch is loaded): only what
# exists everywhere
DEVICES = ["auto", "cpu"]
ATTENTION = ["auto", "sdpa", "eager", "flash_attention_2", "flex_attention"]
GENERATION_FIELDS = [
    ("max_new_tokens", "max new tokens"),
    ("temperature", "temperature (0 = greedy)"),
    ("top_p", "top p"),
    ("top_k", "top k"),
    ("repetition_penalty", "repetition penalty"),
    ("seed", "seed"),
]
# enable_thinking, a chat-template switch of reasoning models (Qwen3, SmolLM3...)
THINKING = [("model default", ""), ("on", "true"), ("off", "false")]


def spec_from_choice(
    base: ModelSpec, source: str, precision: str, device: str, attention: str
) -> ModelSpec:
    quantization = precision if precision in ("8bit", "4bit") else "none"
    dtype = precision if quantization == "none" else base.dtype
    return base.with_changes(
        source=source.strip() or base.source,
        dtype=dtype,
        quantization=quantization,
        device=device,
        attn_implementation=attention,
    )


class SettingsPanel(VerticalScroll):
    @dataclass
    class Applied(Message):
        spec: ModelSpec
        system_prompt: str
        settings: list[str]  # name=value assignments; empty value = unset
        backend: str = "local"  # or "endpoint"
        endpoint: str = ""

    @dataclass
    class EstimateReady(Message):
        text: str

    @dataclass
    class HardwareProbed(Message):
        devices: list[str]
        precisions: dict[str, str]  # name -> label with its warning ("bf16 — slow on …")

    def __init__(self, spec: ModelSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.endpoint_hint = ""  # the last server used, offered when switching backend

    def compose(self) -> ComposeResult:
        spec = self.spec
        yield Static("Model", classes="panel-title")
        yield Label("backend")
        yield SafeSelect(
            [("Local (this machine)", "local"), ("Endpoint (OpenAI API)", "endpoint")],
            value="local",
            allow_blank=False,
            id="backend",
        )
        yield Input("", placeholder="http://127.0.0.1:8000/v1", id="endpoint-url")
        yield Input(
            spec.source, placeholder="default, org/name, folder or .gguf", id="model-source"
        )
        yield Label("precision")
        precision = spec.quantization if spec.quantization != "none" else spec.dtype
        yield SafeSelect(PRECISIONS, value=precision, allow_blank=False, id="precision")
        yield Label("device")
        devices = DEVICES + ([spec.device] if spec.device not in DEVICES else [])
        yield SafeSelect(
            [(d, d) for d in devices], value=spec.device, allow_blank=False, id="device"
        )
        yield Label("attention")
        yield SafeSelect(
            [(a, a) for a in ATTENTION],
            value=spec.attn_implementation,
            allow_blank=False,
            id="attention",
        )
        yield Static("", id="estimate", classes="estimate", markup=False)
        yield Static("Conversation", classes="panel-title")
        yield Label("system prompt")
        yield TextArea("", id="system-prompt", classes="system-prompt")
        yield Label("thinking (reasoning models)")
        yield SafeSelect(THINKING, value="", allow_blank=False, id="thinking")
        for name, label in GENERATION_FIELDS:
            yield Label(label)
            yield Input("", placeholder="model default", id=f"gen-{name}", classes="gen-field")
        yield Button("Apply (reloads the model if it changed)", id="apply", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#endpoint-url").display = False
        # after the first frame: the estimate imports transformers and torch in a
        # thread, which would compete with the frame for the interpreter (no gain
        # beyond the noise was measured: main screen 1.74 s before, 1.97 s after, median)
        self.call_after_refresh(self.refresh_estimate)

    @on(Select.Changed, "#backend")
    def _backend_changed(self, event: Select.Changed) -> None:
        remote = event.value == "endpoint"
        url = self.query_one("#endpoint-url", Input)
        url.display = remote
        if remote and not url.value and self.endpoint_hint:
            url.value = self.endpoint_hint
        for selector in ("#precision", "#device", "#attention"):
            self.query_one(selector).disabled = remote

    # -- what this machine has -----------------------------------------------------------
    @work(thread=True, exclusive=True, group="hardware", exit_on_error=False)
    def probe_hardware(self, device: str = "cpu") -> None:
        """List the devices that exist and mark precisions slow on ``device`` (a probe
        of a few hundred milliseconds, once per process)."""
        from ..engine import devices

        names = ["auto", *devices.device_names()]
        where = device if device != "auto" else names[1] if len(names) > 1 else "cpu"
        labels: dict[str, str] = {}
        for item in devices.precisions(where):
            if item.name in PRECISION_NAMES and item.label != item.name:
                labels[item.name] = item.label
        self.post_message(self.HardwareProbed(names, labels))

    def on_settings_panel_hardware_probed(self, message: HardwareProbed) -> None:
        device = self.query_one("#device", Select)
        current = device.value
        device.set_options([(d, d) for d in message.devices])
        device.value = current if current in message.devices else "auto"
        precision = self.query_one("#precision", Select)
        chosen = precision.value
        precision.set_options(
            [(message.precisions.get(value, label), value) for label, value in PRECISIONS]
        )
        precision.value = chosen

    def show_conversation(self, system_prompt: str, settings: dict[str, Any]) -> None:
        """Fill the conversation fields from the active tab."""
        self.query_one("#system-prompt", TextArea).load_text(system_prompt)
        thinking = settings.get("enable_thinking")
        self.query_one("#thinking", Select).value = (
            "" if not isinstance(thinking, bool) else str(thinking).lower()
        )
        for name, _label in GENERATION_FIELDS:
            value = settings.get(name)
            self.query_one(f"#gen-{name}", Input).value = "" if value is None else str(value)

    def show_spec(self, spec: ModelSpec, endpoint: str | None = None) -> None:
        self.spec = spec
        self.query_one("#backend", Select).value = "endpoint" if endpoint else "local"
        if endpoint:
            self.query_one("#endpoint-url", Input).value = endpoint
        self.query_one("#model-source", Input).value = spec.source
        precision = spec.quantization if spec.quantization != "none" else spec.dtype
        self.query_one("#precision", Select).value = precision
        device = self.query_one("#device", Select)
        known = [value for _label, value in device._options]
        device.value = spec.device if spec.device in known else "auto"
        self.query_one("#attention", Select).value = spec.attn_implementation
        self.refresh_estimate()

    def chosen_spec(self) -> ModelSpec:
        return spec_from_choice(
            self.spec,
            self.query_one("#model-source", Input).value,
            str(self.query_one("#precision", Select).value),
            str(self.query_one("#device", Select).value),
            str(self.query_one("#attention", Select).value),
        )

    @on(Select.Changed)
    @on(Input.Submitted, "#model-source")
    def _changed(self) -> None:
        self.refresh_estimate()

    def refresh_estimate(self) -> None:
        if self.query_one("#backend", Select).value == "endpoint":
            self.query_one("#estimate", Static).update("weights: remote (on the server)")
            return
        try:
            spec = self.chosen_spec()
        except Exception as exc:
            self.query_one("#estimate", Static).update(safe_text.visible(str(exc)))
            return
        self.query_one("#estimate", Static).update("estimating memory…")
        self._estimate(spec)

    @work(thread=True, exclusive=True, group="estimate", exit_on_error=False)
    def _estimate(self, spec: ModelSpec) -> None:
        from ..engine import loader
        from ..engine.errors import EngineError

        try:
            text = "estimate: " + loader.estimate_for(spec).describe()
        except EngineError as exc:
            text = str(exc)
        except Exception as exc:
            text = f"No estimate: {exc}"
        self.post_message(self.EstimateReady(text))

    def on_settings_panel_estimate_ready(self, message: EstimateReady) -> None:
        self.query_one("#estimate", Static).update(safe_text.visible(message.text))

    @on(Button.Pressed, "#apply")
    def apply(self) -> None:
        try:
            spec = self.chosen_spec()
        except Exception as exc:
            self.app.notify(str(exc), severity="error")
            return
        assignments = []
        for name, _label in GENERATION_FIELDS:
            value = self.query_one(f"#gen-{name}", Input).value.strip()
            assignments.append(f"{name}={value}")
        assignments.append(f"enable_thinking={self.query_one('#thinking', Select).value}")
        system = self.query_one("#system-prompt", TextArea).text
        backend = str(self.query_one("#backend", Select).value)
        endpoint = self.query_one("#endpoint-url", Input).value
        self.post_message(self.Applied(spec, system, assignments, backend, endpoint))
