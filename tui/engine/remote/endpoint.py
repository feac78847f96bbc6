"""The :class:`Endpoint`: a server's base URL with its credentials taken out (kept
private, never shown), where the API key comes from, the timeout, TLS verification, and
the endpoint's one kept client."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import RemoteError
from .redact import _Secret, redact_url
from .transport import _Kept

DEFAULT_TIMEOUT = 60.0


@dataclass
class Endpoint:
    url: str  # base URL ending in /v1 (added if missing); credentials removed or ***
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = DEFAULT_TIMEOUT
    verify_tls: bool = True
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        given = str(self.url).strip()
        url = given.rstrip("/")
        if "://" not in url:
            url = "http://" + url
        # a URL that does not parse may hide a key anywhere: then it is not echoed at all
        shown = "The endpoint URL" if "@" in given else repr(redact_url(given))
        bad = RemoteError(f"{shown} is not an http(s) URL.")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises ValueError for a bad port
            hostname = parts.hostname
        except ValueError:
            raise bad from None
        if parts.scheme not in ("http", "https") or not hostname:
            raise bad
        userinfo, at, hostport = parts.netloc.rpartition("@")
        # not dataclass fields: never in repr(), asdict() or anything saved
        self._url_key: _Secret | None = None
        if at:
            user, colon, password = userinfo.partition(":")
            key = unquote(password if colon and password else user)
            self._url_key = _Secret(key) if key else None
        path = parts.path.rstrip("/")
        if not path.endswith("/v1"):
            path += "/v1"
        self._base = urlunsplit((parts.scheme, hostport, path, "", ""))
        self._query = _Secret(parts.query)  # sent as given (it may carry a key)
        self.url = redact_url(urlunsplit((parts.scheme, hostport, path, parts.query, "")))
        self._hostport = hostport
        self._http = _Kept(self)
        if parts.scheme == "http" and not _is_loopback(hostname):
            self.warnings.append(
                f"{hostname} is reached over plain http: prompts, replies and the API key "
                "travel unencrypted."
            )

    @property
    def host(self) -> str:
        return self._hostport

    def api_key(self) -> str | None:
        """The key to send: the environment variable's, else the one from the URL."""
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        return self._url_key.reveal() if self._url_key is not None else None

    def _key_source(self) -> str:
        return f"${self.api_key_env}" if os.environ.get(self.api_key_env) else "the endpoint URL"

    def _target(self, path: str) -> str:
        query = self._query.reveal()
        return self._base + path + (f"?{query}" if query else "")


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
