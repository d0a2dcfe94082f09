"""SMS gateways behind one small interface: a file outbox for development, an HTTP provider.

The module sends only verification codes; which gateway is the deployment's choice
(`phone.sms` in the module's config).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import jinja2
from synapse.module_api import ModuleApi
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

from sferum_shared import Clock
from synapse_sferum.config import FileSmsConfig, HttpSmsConfig


class SmsError(Exception):
    """The gateway did not take the message."""


class SmsGateway(Protocol):
    async def send(self, to: str, text: str) -> None:
        """`to` is E.164 with the "+"."""


class FileSmsGateway:
    """Appends `{"to", "text", "ts"}` lines to a file: the demo's and the tests' phone."""

    def __init__(self, api: ModuleApi, path: str, clock: Clock):
        self._api = api
        self._path = Path(path)
        self._clock = clock

    async def send(self, to: str, text: str) -> None:
        line = json.dumps(
            {"to": to, "text": text, "ts": int(self._clock.seconds())}, ensure_ascii=False
        )
        await self._api.defer_to_thread(self._append, line + "\n")

    def _append(self, line: str) -> None:
        # One write of a short line to a file opened for appending: concurrent senders (workers)
        # never interleave within a line.
        with self._path.open("a", encoding="utf-8") as outbox:
            outbox.write(line)


class HttpSmsGateway:
    def __init__(self, api: ModuleApi, config: HttpSmsConfig):
        self._api = api
        self._config = config
        env = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined)
        self._body = env.from_string(config.body_template)

    async def send(self, to: str, text: str) -> None:
        headers = {b"Content-Type": [self._config.content_type.encode()]}
        if self._config.auth_header:
            headers[b"Authorization"] = [self._config.auth_header.encode()]
        body = self._body.render(to=to, text=text).encode()
        response = await self._api.http_client.request(
            self._config.method, self._config.url, data=body, headers=Headers(headers)
        )
        reply = await readBody(response)
        if not 200 <= response.code < 300:
            raise SmsError(
                f"SMS gateway {self._config.url} answered {response.code}: {reply[:200]!r}"
            )


def sms_gateway(
    api: ModuleApi, config: FileSmsConfig | HttpSmsConfig | None, clock: Clock
) -> SmsGateway | None:
    if isinstance(config, FileSmsConfig):
        return FileSmsGateway(api, config.path, clock)
    if isinstance(config, HttpSmsConfig):
        return HttpSmsGateway(api, config)
    return None
