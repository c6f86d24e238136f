"""What keeps many AWS clients cheap in memory: lean service models and one TLS context.

A botocore client holds its service's JSON model (parsed once per session and shared by the
clients of that service) and, from its first request, an aiohttp connector with a TLS context
loaded with the CA bundle. On a Raspberry Pi both add up: measured with `python -m bench.footprint
--breakdown`, the models of the eight services awsd uses took ~20 MB and each client's context
~0.7 MB. Two changes, neither visible to callers:

- `LeanModelLoader` parses botocore's data files into plain dicts (botocore asks for
  OrderedDicts, twice the size; nothing it does needs their order-sensitive methods) and empties
  every `documentation` string (~80% of a service model; botocore reads them only to write
  docstrings and help text, and gets "" as for a shape that has none). `endpoints.json` alone
  shrinks from 6.8 to 4.1 MB.
- `SharedTlsSession` gives every client's connector one TLS context per CA bundle instead of a
  new one each, with the same verification settings botocore would have built.
"""

from __future__ import annotations

import json
import os
import ssl
from typing import Any

from aiobotocore.httpsession import AIOHTTPSession
from aiohttp import TCPConnector
from botocore.httpsession import create_urllib3_context, get_cert_path
from botocore.loaders import JSONFileLoader

EMPTIED_KEYS = frozenset({"documentation"})
"""Keys whose text is replaced by "" (kept, not dropped: botocore reads some of them with [])."""


def _lean_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {key: "" if key in EMPTIED_KEYS else value for key, value in pairs}


class LeanModelLoader(JSONFileLoader):  # type: ignore[misc]
    """botocore's JSON file loader, parsing into plain dicts with empty documentation strings."""

    def _load_file(self, full_path: str, open_method: Any) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as fp:
            payload = fp.read()
        return json.loads(payload, object_pairs_hook=_lean_object)


def install_lean_loader(botocore_session: Any) -> None:
    """Make `botocore_session` parse its data files lean (before any client is created)."""
    botocore_session.get_component("data_loader").file_loader = LeanModelLoader()


_CONTEXTS: dict[str, ssl.SSLContext] = {}


def shared_tls_context(ca_bundle: str) -> ssl.SSLContext:
    """The process's TLS context verifying against `ca_bundle`, built as botocore builds one."""
    context = _CONTEXTS.get(ca_bundle)
    if context is None:
        context = create_urllib3_context()
        context.load_verify_locations(ca_bundle, None, None)
        _CONTEXTS[ca_bundle] = context
    return context


class SharedTlsSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's HTTP session, with the shared TLS context on the direct (no proxy, no
    client certificate) path; any other set-up is left to aiobotocore unchanged."""

    def _create_connector(self, proxy_url: str | None) -> TCPConnector:
        if proxy_url or self._cert_file or not self._verify:
            connector: TCPConnector = super()._create_connector(proxy_url)
            return connector
        return TCPConnector(
            limit=self._max_pool_connections,
            ssl=shared_tls_context(get_cert_path(self._verify)),
            **self._connector_args,
        )
