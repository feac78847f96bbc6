"""The model controller: which backend is active, what it has loaded, whether it is
ready, and the load/rollback rules. No Textual: the app drives it from a worker thread.

* A load that fails leaves the active backend and its model exactly as they were.
* Moving to an endpoint keeps the local model loaded, so coming back to it is instant.
* ``ready`` is set while some model can answer; a chat started before the first load
  waits for it (and can still be stopped while waiting).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import EngineError
from .protocol import ChatEngine, ChatRequest, ModelInfo, OnStart, OnText, OnWait
from .spec import ModelSpec

if TYPE_CHECKING:
    from .compare import ComparedReply, CompareProgress, Comparison
    from .generation import GenerationResult
    from .progress import Progress
    from .remote import Endpoint
    from .replay import ReplayReport
    from .settings import GenerationSettings

SERVER_PREFIX = "server:"  # a model on the current endpoint, as the picker names it


@dataclass(frozen=True)
class LocalTarget:
    spec: ModelSpec


@dataclass(frozen=True)
class EndpointTarget:
    endpoint: Endpoint
    model: str = "default"


Target = LocalTarget | EndpointTarget


class ModelController:
    """Holds the local engine, the active backend and the current spec."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        engine: ChatEngine | None = None,
        settings_args: Sequence[str] = (),
        prompt_lookup: int | None = None,
        assistant_model: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        start_endpoint: Endpoint | None = None,
    ) -> None:
        self.spec = spec
        self.start_endpoint = start_endpoint  # the server named on the command line
        self.settings_args = list(settings_args)
        self.prompt_lookup = prompt_lookup
        self.assistant_model = assistant_model
        self.api_key_env = api_key_env
        self.active: ChatEngine | None = engine
        self.local: ChatEngine | None = (
            engine if engine is not None and engine.capabilities.kind == "local" else None
        )
        self.ready = threading.Event()
        self.status = "starting…"
        self._lock = threading.Lock()
        if engine is not None and engine.loaded is not None:
            self.ready.set()
            self.status = ""

    # -- what is loaded ---------------------------------------------------------------
    @property
    def engine(self) -> ChatEngine | None:
        return self.active

    @property
    def model(self) -> ModelInfo | None:
        return self.active.loaded if self.active is not None else None

    @property
    def on_endpoint(self) -> bool:
        return self.active is not None and self.active.capabilities.kind == "endpoint"

    @property
    def endpoint_url(self) -> str | None:
        return self.active.endpoint_url if self.active is not None else None

    def default_settings(self) -> dict[str, object]:
        """The generation settings given on the command line (``key=value``): what a
        new conversation starts with."""
        from .settings import GenerationSettings

        settings = GenerationSettings()
        settings.update(self.settings_args)  # validated by the command line already
        return dict(settings.values)

    def local_spec(self) -> ModelSpec:
        """The local model's spec (loaded, or the one to load)."""
        local = self.local.loaded if self.local is not None else None
        return local.spec if local is not None else self.spec

    def _local_engine(self) -> ChatEngine:
        if self.local is None:
            from .local import LocalEngine
            from .settings import GenerationSettings

            settings = GenerationSettings()
            settings.update(self.settings_args)  # validated by the caller already
            self.local = LocalEngine(settings=settings, prompt_lookup=self.prompt_lookup)
        return self.local

    # -- choosing what to load ----------------------------------------------------------
    def make_endpoint(self, url: str) -> Endpoint:
        """A server typed in the app: with the command line's ``--timeout``; its
        ``--insecure`` was said for that one server, so it holds only for it."""
        from .remote import Endpoint

        start = self.start_endpoint
        if start is None:
            return Endpoint(url, api_key_env=self.api_key_env)
        same_server = Endpoint(url, api_key_env=self.api_key_env).host == start.host
        return Endpoint(
            url,
            api_key_env=self.api_key_env,
            timeout=start.timeout,
            verify_tls=start.verify_tls or not same_server,
        )

    def target_for_source(self, source: str, device: str | None = None) -> Target:
        """What a typed or picked model means: ``server:NAME`` is a model on the current
        endpoint; ``http://`` or ``https://`` is a server to switch to; anything else is
        a local model in the SPEC grammar ``[MODEL][@PRECISION]`` (``@bf16`` alone: the
        local model at another precision; ``./other@8bit``), loaded with the local
        model's other settings, on ``device`` if given. Raises :class:`EngineError`."""
        from .spec import normalize_device, parse_compare_spec

        text = source.strip()
        if text.startswith(SERVER_PREFIX):
            endpoint = getattr(self.active, "endpoint", None)
            if not self.on_endpoint or endpoint is None:
                raise EngineError("No endpoint is in use; pick a local model instead.")
            return EndpointTarget(endpoint, text[len(SERVER_PREFIX) :])
        if text.lower().startswith(("http://", "https://")):
            return EndpointTarget(self.make_endpoint(text), "default")
        wanted = parse_compare_spec(text)
        if wanted.no_draft:
            raise EngineError("@same-no-draft is for /compare; /model takes a precision.")
        spec = wanted.resolve(self.local_spec())
        if device:
            spec = spec.with_changes(device=normalize_device(device))
        return LocalTarget(spec)

    def target_for_choice(
        self, spec: ModelSpec, backend: str = "local", url: str = ""
    ) -> Target | None:
        """What the side panel's Apply asks for, or ``None`` if it is already in use."""
        if backend == "endpoint":
            if not url.strip():
                raise EngineError("Type the server's URL, e.g. http://127.0.0.1:8000/v1.")
            endpoint = self.make_endpoint(url)
            current = self.model
            same = self.on_endpoint and self.endpoint_url == endpoint.url
            if same and current is not None and spec.source in (current.name, "default", ""):
                return None
            return EndpointTarget(endpoint, spec.source)
        current = self.local.loaded if self.local is not None else None
        if not self.on_endpoint and current is not None and current.spec == spec:
            return None
        return LocalTarget(spec)

    # -- loading --------------------------------------------------------------------------
    def load(self, target: Target, progress: Progress | None = None) -> ModelInfo:
        """Load ``target`` (blocking: call it from a worker thread) and make it active.

        Raises :class:`EngineError`; then nothing changed."""
        with self._lock:
            if isinstance(target, EndpointTarget):
                from .remote import RemoteEngine

                settings = self.local.settings if self.local is not None else None
                engine: ChatEngine = RemoteEngine(target.endpoint, settings=settings)
                info = engine.load(ModelSpec(source=target.model or "default"), progress)
            else:
                engine = self._local_engine()
                info = engine.loaded
                if info is None or info.spec != target.spec:
                    info = engine.load(target.spec, progress)
                    if self.assistant_model:
                        engine.load_assistant(
                            target.spec.with_changes(source=self.assistant_model), progress
                        )
            self.active = engine
            self.spec = info.spec
            self.ready.set()
            self.status = ""
            return info

    def load_failed(self) -> str:
        """The status after a failed load; the previous model (if any) stays."""
        if self.model is not None:
            self.ready.set()
            self.status = ""
            return f" Still using {self.model.name}."
        self.status = "no model loaded (ctrl+l picks one)"
        return " Pick another model with ctrl+l."

    def loading(self, stage: str, fraction: float) -> None:
        if self.model is None:
            self.status = f"{stage} ({fraction * 100:.0f}%)"

    # -- chatting ------------------------------------------------------------------------
    def chat(
        self,
        request: ChatRequest,
        *,
        stop_event: threading.Event | None = None,
        on_text: OnText | None = None,
        on_start: OnStart | None = None,
        on_wait: OnWait | None = None,
    ) -> GenerationResult | None:
        """Wait for a model (``None`` if stopped while waiting), then chat with it."""
        stop = stop_event or threading.Event()
        while not self.ready.wait(0.1):
            if stop.is_set():
                return None
        engine = self.active
        assert engine is not None
        return engine.chat(
            request, stop_event=stop, on_text=on_text, on_start=on_start, on_wait=on_wait
        )

    def _wait_for_local(self, stop_event: threading.Event, doing: str) -> ChatEngine | None:
        """The local engine once a model is ready (``None`` if stopped while waiting)."""
        while not self.ready.wait(0.1):
            if stop_event.is_set():
                return None
        engine = self.active
        if engine is None or engine.capabilities.kind != "local":
            raise EngineError(
                f"{doing} runs models on this machine; switch to a local model first."
            )
        return engine

    def compare(
        self,
        messages: Sequence[dict[str, str]],
        specs: Sequence[str],
        *,
        stop_event: threading.Event,
        system_prompt: str | None = None,
        settings: GenerationSettings | None = None,
        use_turn_settings: bool = False,
        placement: str = "auto",
        on_progress: Callable[[CompareProgress], None] | None = None,
        on_text: Callable[[int, str], None] | None = None,
        on_reply: Callable[[ComparedReply], None] | None = None,
    ) -> Comparison | None:
        """One turn answered by the loaded model and by each spec (see
        :func:`.compare.compare_turn`); ``None`` if stopped while waiting for a model.
        Loads wait until it is over, so the model it restores is still the active one."""
        from .compare import compare_turn

        engine = self._wait_for_local(stop_event, "Comparing")
        if engine is None:
            return None
        with self._lock:
            return compare_turn(
                engine,  # type: ignore[arg-type]  # a local engine is a LocalEngine
                messages,
                specs,
                system_prompt=system_prompt,
                settings=settings,
                use_turn_settings=use_turn_settings,
                placement=placement,
                stop_event=stop_event,
                on_progress=on_progress,
                on_text=on_text,
                on_reply=on_reply,
            )

    def replay(
        self,
        messages: Sequence[dict[str, str]],
        saved_text: str,
        snapshot: dict,
        *,
        stop_event: threading.Event,
        system_prompt: str | None = None,
        saved_stop_reason: str | None = None,
        progress: Progress | None = None,
        spec: ModelSpec | None = None,
        allow_download: bool = False,
        saved_reasoning: str | None = None,
    ) -> ReplayReport | None:
        """Make a saved reply again from its snapshot (see :func:`.replay.replay`), on the
        local engine when it holds the snapshot's model; ``None`` if stopped while
        waiting for a model."""
        from .replay import replay

        engine = self._wait_for_local(stop_event, "Replaying")
        if engine is None:
            return None
        with self._lock:
            return replay(
                messages,
                saved_text,
                snapshot,
                system_prompt=system_prompt,
                saved_stop_reason=saved_stop_reason,
                saved_reasoning=saved_reasoning,
                engine=engine,  # type: ignore[arg-type]
                progress=progress,
                stop_event=stop_event,
                spec=spec,
                allow_download=allow_download,
            )

    def forget(self, conversation_id: str) -> None:
        for engine in {id(e): e for e in (self.active, self.local) if e is not None}.values():
            engine.forget(conversation_id)

    def cache_bytes(self, conversation_id: str | None) -> int:
        if self.active is None or conversation_id is None:
            return 0
        return self.active.cache_bytes(conversation_id)

    def all_cache_bytes(self) -> int:
        """Every conversation's KV cache: those kept between turns and the batch's."""
        return self.active.cache_bytes(None) if self.active is not None else 0
