"""What the daemon's HTTP listeners share: the route handler type.

The loopback health server (`daemon.runtime.health`) serves routes other parts add (`/metrics`,
`POST /publish`); they are plain aiohttp handlers of this type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp route handler."""
