"""A second backend: any server that speaks the OpenAI chat-completions API with
server-sent events (``transformers serve``, vLLM, TGI, the llama.cpp server, Ollama).

HTTP goes through one kept ``httpx2`` client per :class:`Endpoint`: connections are
reused, proxies come from ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY``, TLS
is verified (``verify_tls=False`` turns that off). This package keeps the bounds, the stop
and the sentences. Every fault (server or proxy down, refused, 401/404/429/5xx, a web
page or other non-API answer, a malformed or truncated event stream, a drop mid-reply,
a stall past the timeout, an oversized answer) becomes one sentence; a reply that was
partly streamed is returned with what arrived, ``stop_reason='error'``, so the caller
keeps it.

**The server is not trusted.** Everything it controls is bounded:

* time to the response headers: the endpoint's ``timeout`` (resolve, connect, TLS, send
  and wait for headers together); while streaming, ``timeout`` without reply data
  (silence, or only keep-alive comments and empty events, count alike); an answer that
  is not a stream must arrive whole within ``timeout`` of its headers;
* response headers: :data:`MAX_HEADERS`; one event-stream line: :data:`MAX_LINE`
  (parsed in linear time, the line buffer never holds more than that);
* the reply's text: what was asked for (:data:`BYTES_PER_TOKEN` UTF-8 bytes per requested
  ``max_tokens``, at least :data:`MIN_REPLY`) and never more than :data:`MAX_REPLY`;
  past that, reading stops and the text so far is kept with the reason;
* error texts: :data:`MAX_ERROR_BODY` read, :data:`MAX_DETAIL` characters quoted, as
  plain text (the UI neutralizes controls where it shows them);
* invalid UTF-8 becomes U+FFFD (each line is decoded whole, so a character split between
  two reads still decodes), lone surrogates from JSON escapes too.

**Stopping is prompt in every phase** (resolving, connecting, TLS, sending, waiting for
headers, streaming). A request is sent from a helper thread (:class:`_Call`) while the
caller waits at most :data:`POLL` at a time, checking the stop event and the timeout;
the caller then reads the answer itself, and the helper watches the stop event until
the call ends: a stop shuts the connection's socket down, which wakes a blocked read at
once. So a signal handler that sets the event (one-shot mode runs this on the main
thread) is honoured within a fraction of a second however fast the server floods. A
stop is ``stop_reason='stopped'``.

**The API key** is read from an environment variable (default ``OPENAI_API_KEY``) when a
request is made, and sent as ``Authorization: Bearer <key>``. A key may also be written
into the URL, ``http://user:KEY@host/v1``: the password is the key (or, when there is no
password, the user name is), percent-decoding applied; the environment variable wins
when both are set. The URL's credentials are removed from :attr:`Endpoint.url` and
:attr:`Endpoint.host` at once (so from every message, every saved file and the repr) and
kept only in a private attribute. Query parameters whose names look like credentials
(``key``, ``api_key``, ``access_token``, ``sig``, ``password``, ...) are still sent, as
some servers take keys that way, but :attr:`Endpoint.url` shows them as ``***``;
:func:`redact_url` does the same for any URL string, fragment included.

The package, one concern a module, each importing at run time only those listed before
it (an endpoint makes its kept client, so :mod:`.endpoint` comes after :mod:`.transport`):

* :mod:`.redact`: credentials never shown (:func:`redact_url`, the log filter);
* :mod:`.errors`: :class:`RemoteError` and the error sentences;
* :mod:`.transport`: the kept client, TLS, one request bounded in every phase;
* :mod:`.endpoint`: :class:`Endpoint`, its URL, key, timeout and kept client;
* :mod:`.stream`: the request body, the reply's bounds, reading the event stream,
  :func:`stream_chat`;
* :mod:`.engine`: :class:`RemoteEngine`, :class:`RemoteModel`, :func:`list_models`.
"""

from .endpoint import DEFAULT_TIMEOUT, Endpoint
from .engine import MAX_MODEL_LIST, RemoteEngine, RemoteModel, list_models
from .errors import MAX_DETAIL, MAX_ERROR_BODY, RemoteError
from .redact import REDACTED, redact_url
from .stream import (
    BYTES_PER_TOKEN,
    MAX_REPLY,
    MIN_REPLY,
    REASONING_DELTAS,
    reply_limit,
    request_body,
    stream_chat,
)
from .transport import DRAIN, KEEPALIVE, MAX_HEADERS, MAX_LINE, POLL

__all__ = [
    "BYTES_PER_TOKEN",
    "DEFAULT_TIMEOUT",
    "DRAIN",
    "KEEPALIVE",
    "MAX_DETAIL",
    "MAX_ERROR_BODY",
    "MAX_HEADERS",
    "MAX_LINE",
    "MAX_MODEL_LIST",
    "MAX_REPLY",
    "MIN_REPLY",
    "POLL",
    "REASONING_DELTAS",
    "REDACTED",
    "Endpoint",
    "RemoteEngine",
    "RemoteError",
    "RemoteModel",
    "list_models",
    "redact_url",
    "reply_limit",
    "request_body",
    "stream_chat",
]
