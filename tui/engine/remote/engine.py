"""The backend: :class:`RemoteEngine`, the :class:`~tui.engine.protocol.ChatEngine`
over an endpoint, the :class:`RemoteModel` it stands behind, and :func:`list_models`
(``GET /models``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ...safe_text import fix_surrogates
from ..chat_format import with_system
from ..generation import GenerationResult, TurnInfo
from ..progress import Progress
from ..protocol import Capabilities, ChatEngine, ChatRequest, OnStart, OnText, OnWait
from ..settings import GenerationSettings
from ..spec import ModelSpec
from .endpoint import Endpoint
from .errors import (
    _INVALID,
    RemoteError,
    _detail,
    _http_error,
    _loads,
    _looks_like_html,
    _Lost,
    _not_openai,
    _size,
    _Stopped,
)
from .stream import stream_chat
from .transport import _Call

MAX_MODEL_LIST = 8 << 20  # a /models answer


def list_models(endpoint: Endpoint, stop_event: threading.Event | None = None) -> list[str]:
    """The model ids the server lists (``GET /models``)."""
    call = _Call(endpoint, stop_event or threading.Event())
    host = endpoint.host
    try:
        call.open("GET", "/models", None)
        if call.status != 200:
            raise _http_error(call, None)
        body, cut = call.read_all(MAX_MODEL_LIST)
        if _looks_like_html(call.content_type, body):
            raise _not_openai(endpoint, "answered with a web page")
        if cut:
            raise RemoteError(f"{host} sent a model list over {_size(MAX_MODEL_LIST)}.")
        data = _loads(body.decode("utf-8", "replace"))
        if data is _INVALID:
            raise _not_openai(endpoint, "answered with something other than JSON")
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise _not_openai(endpoint, "answered with JSON that is not a model list")
        models = []
        for item in data["data"]:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str | int):
                raise RemoteError(f"{host} sent a malformed model list.")
            models.append(fix_surrogates(str(item["id"])))
        return models
    except _Stopped:
        raise RemoteError(f"Stopped asking {host} for its models.") from None
    except _Lost as exc:
        raise RemoteError(f"The connection to {host} dropped ({exc}).") from None
    finally:
        call.close()


@dataclass
class RemoteModel:
    """Stands where a LoadedModel does, for the UI and the store."""

    spec: ModelSpec
    endpoint: Endpoint
    name: str
    dtype: str = "remote"
    footprint_bytes: int = 0
    load_seconds: float = 0.0
    context_limit: int | None = None

    @property
    def device(self) -> str:
        return self.endpoint.host


class RemoteEngine(ChatEngine):
    """The :class:`~tui.engine.protocol.ChatEngine` interface over an OpenAI-compatible
    server. The chat-completions API has no portable way to continue a partial
    assistant message, so ``continue_reply`` is off and such a request is refused."""

    capabilities = Capabilities(
        kind="endpoint",
        weights_in_memory=False,
        continue_reply=False,
        kv_cache=False,
        token_count=False,
        speculative=False,
    )

    def __init__(self, endpoint: Endpoint, settings: GenerationSettings | None = None) -> None:
        self.endpoint = endpoint
        self.settings = settings or GenerationSettings()
        self.loaded: RemoteModel | None = None
        self.reuse_cache = False

    @property
    def endpoint_url(self) -> str | None:
        return self.endpoint.url

    def load(self, spec: ModelSpec, progress: Progress | None = None) -> RemoteModel:
        report = progress or (lambda f, s: None)
        report(0.1, f"asking {self.endpoint.host} for its models")
        models = list_models(self.endpoint)
        source = spec.source
        if source in ("", "default"):
            if not models:
                raise RemoteError(f"{self.endpoint.host} lists no models; pass one with --model.")
            source = models[0]
        elif models and source not in models:
            raise RemoteError(
                f"{self.endpoint.host} does not serve {source!r}; it lists: "
                + ", ".join(_detail(m)[:80] for m in models[:8])
                + ("…" if len(models) > 8 else "")
                + "."
            )
        remote = RemoteModel(spec.with_changes(source=source), self.endpoint, source)
        self.loaded = remote
        report(1.0, f"using {source} on {self.endpoint.host}")
        return remote

    def load_assistant(self, spec: ModelSpec | None, progress: Progress | None = None) -> None:
        if spec is not None:
            raise RemoteError("Speculative decoding is up to the server with an endpoint.")

    def chat(
        self,
        request: ChatRequest,
        *,
        stop_event: threading.Event | None = None,
        on_text: OnText | None = None,
        on_start: OnStart | None = None,
        on_wait: OnWait | None = None,
    ) -> GenerationResult:
        """Requests run at once, each on its own connection: the server batches them."""
        if self.loaded is None:
            raise RemoteError("No endpoint model is selected yet.")
        if request.continue_final:
            self.refuse_continue()
        msgs = with_system(request.messages, request.system_prompt)
        if on_start is not None:
            on_start(TurnInfo(context_limit=self.loaded.context_limit))
        settings = request.settings or self.settings
        return stream_chat(self.endpoint, self.loaded.name, msgs, settings, stop_event, on_text)
