"""The error sentences: :class:`RemoteError`, which carries one; the signals that
unwind a request (stopped, lost, silent); the helpers that quote a server's own text
(:func:`_detail`, bounded by :data:`MAX_DETAIL`) and sizes; and the sentences for an
answer that is not the API's (:func:`_not_openai`) or not a 200 (:func:`_http_error`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ...safe_text import fix_surrogates
from ..errors import EngineError

if TYPE_CHECKING:
    from .endpoint import Endpoint
    from .transport import _Call

MAX_ERROR_BODY = 64 * 1024  # how much of an error answer is read
MAX_DETAIL = 200  # characters of a server's own error text quoted in a sentence


class RemoteError(EngineError):
    pass


class _Stopped(Exception):
    """The stop event was set: unwinds to the caller, which reports ``stopped``."""


class _Lost(Exception):
    """The connection broke under us (reset, cut short, malformed framing)."""


class _Silent(Exception):
    """Nothing arrived within the endpoint's timeout."""


def _size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n} bytes"


def _detail(value: Any) -> str:
    """A server's own text for a sentence: one line, plain, at most MAX_DETAIL chars."""
    try:
        if isinstance(value, str):
            text = value
        elif isinstance(value, dict | list):
            text = json.dumps(value, ensure_ascii=False)
        else:
            text = str(value)
    except (TypeError, ValueError, RecursionError):
        text = ""
    text = " ".join(fix_surrogates(text[: MAX_DETAIL * 4]).split())
    if len(text) > MAX_DETAIL:
        text = text[: MAX_DETAIL - 1] + "…"
    return text


def _loads(text: str) -> Any:
    """JSON from the server, or ``_INVALID`` (never RecursionError or ValueError)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _INVALID


_INVALID = object()


def _not_openai(endpoint: Endpoint, how: str, who: str | None = None) -> RemoteError:
    return RemoteError(
        f"{who or endpoint.host} {how}: this is not an OpenAI-compatible API at "
        f"{endpoint.url}; check the URL."
    )


def _cause(exc: BaseException | None, kind: type[BaseException]) -> Any:
    """The first exception of ``kind`` among ``exc`` and its causes, or None."""
    for _ in range(8):
        if exc is None or isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _looks_like_html(content_type: str, body: bytes) -> bool:
    if content_type in ("text/html", "application/xhtml+xml"):
        return True
    return body.lstrip()[:1] == b"<"


def _http_error(call: _Call, model: str | None) -> RemoteError:
    """One sentence for a non-200 answer (reads at most MAX_ERROR_BODY of it)."""
    endpoint, status = call.endpoint, call.status
    try:
        body, _cut = call.read_all(MAX_ERROR_BODY)
    except (RemoteError, _Lost):
        body = b""
    host = call.who
    if _looks_like_html(call.content_type, body):
        if status in (401, 403, 429) or status >= 500:
            detail = "a web page, not an API answer"
        else:
            return _not_openai(endpoint, f"answered {status} with a web page", host)
    else:
        text = body.decode("utf-8", "replace")
        payload = _loads(text)
        detail = ""
        if isinstance(payload, dict):
            err = payload.get("error", payload)
            if isinstance(err, dict):
                detail = err.get("message") or err.get("detail") or ""
            else:
                detail = err
        elif payload is _INVALID:
            detail = text
        else:
            detail = payload
        detail = _detail(detail)
    suffix = f" ({detail})" if detail else ""
    if status == 401 or status == 403:
        return RemoteError(
            f"{host} refused the request ({status}): set the API key in "
            f"${endpoint.api_key_env} (or name another variable with --api-key-env){suffix}."
        )
    if status == 404:
        what = f"model {model!r}" if model else "the chat endpoint"
        return RemoteError(f"{host} does not know {what} (404){suffix}; check the URL and model.")
    if status == 407:
        return RemoteError(
            f"The proxy for {endpoint.host} wants credentials (407): put them in the proxy "
            "URL in $HTTP_PROXY or $HTTPS_PROXY."
        )
    if status == 429:
        return RemoteError(f"{host} is rate-limiting requests (429); retry in a moment{suffix}.")
    if status >= 500:
        return RemoteError(f"{host} failed with a server error ({status}){suffix}; retry.")
    return RemoteError(f"{host} answered {status}{suffix}.")
