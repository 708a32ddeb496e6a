"""Webhook: `http://...` / `https://...`, each decision POSTed as its JSON record (requests).

The URL is used exactly as given, query string included (the sink has no options of its own;
the shared ones, timeout_s included, come from SinkOptions). A 2xx reply is delivered; a
connection error, a timeout, 408, 425, 429 or 5xx is retried with backoff; any other reply
(3xx, 4xx) cannot get better by retrying and fails at once. Redirects are not followed.

Environment: EDGEFREQ_WEBHOOK_TOKEN is sent as `Authorization: Bearer TOKEN` (never put
secrets in the URL's user:password part). For a private CA, requests reads REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import requests

from edgefreq import __version__
from edgefreq.runtime.sinks.base import Item, PermanentError, Sink
from edgefreq.runtime.sinks.options import SinkOptions
from edgefreq.runtime.uri import Uri

RETRY_STATUS = frozenset({408, 425, 429})


class WebhookSink(Sink):
    """POSTs each decision's JSON to a URL."""

    def __init__(self, url: str, options: SinkOptions | None = None, name: str | None = None) -> None:
        super().__init__(name or url, options)
        self.url = url
        self._query = urlsplit(url).query  # may carry a secret (?key=...): never in a message
        self._session = requests.Session()
        self._session.headers.update({"Content-Type": "application/json", "User-Agent": f"edgefreq/{__version__}"})
        token = os.environ.get("EDGEFREQ_WEBHOOK_TOKEN")
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_uri(cls, uri: Uri, options: SinkOptions) -> WebhookSink:
        uri.no_credentials("EDGEFREQ_WEBHOOK_TOKEN")
        if not uri.parts.hostname:
            raise uri.error("needs a host: http[s]://HOST[:PORT]/PATH")
        uri.port(443 if uri.scheme == "https" else 80)
        # the query may carry a secret: keep it out of the name that logs show
        name = uri.parts._replace(query="…" if uri.parts.query else "", fragment="").geturl()
        return cls(uri.text, options, name)

    def _deliver(self, item: Item) -> None:
        try:
            reply = self._session.post(
                self.url, data=item.decision.to_json().encode(), timeout=self.options.timeout_s, allow_redirects=False
            )
        except requests.RequestException as exc:  # its text quotes the URL, query string and all
            text = str(exc).replace(self._query, "…") if self._query else str(exc)
            raise ConnectionError(f"{type(exc).__name__}: {text}") from None
        status = reply.status_code
        reply.close()
        if 200 <= status < 300:
            return
        message = f"HTTP {status} {reply.reason}"
        if status in RETRY_STATUS or status >= 500:
            raise ConnectionError(message)
        raise PermanentError(message)

    def _release(self) -> None:
        self._session.close()
