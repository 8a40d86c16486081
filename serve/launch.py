"""Which address the service listens on: one rule for `millpond serve`, `just serve` and
`python -m serve`.

- `--host` given: that address;
- else with MILLPOND_API_KEYS set: `serve.host` of millpond.yml;
- else 127.0.0.1 (without keys the service answers this machine only anyway).

Listening on any other address than loopback without keys is refused unless asked for with
`--allow-no-keys`: other machines would only get 403s, and a service that looks open on the
network while nothing guards it is what the flag makes someone decide on purpose.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

LOOPBACK_NAMES = {"localhost"}


class BindRefused(Exception):
    """A non-loopback address without API keys and without `--allow-no-keys`."""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def bind_host(
    configured: str, has_keys: bool, host: str | None = None, allow_no_keys: bool = False
) -> tuple[str, str | None]:
    """(address to listen on, a note for the console or None)."""
    note = None
    if host is not None:
        chosen = host
    elif has_keys:
        chosen = configured
    else:
        chosen = "127.0.0.1"
        if not is_loopback(configured):
            note = f"no MILLPOND_API_KEYS: listening on 127.0.0.1, not serve.host {configured}"
    if not has_keys and not is_loopback(chosen):
        if not allow_no_keys:
            raise BindRefused(
                f"refusing to listen on {chosen} without MILLPOND_API_KEYS: set "
                "MILLPOND_API_KEYS=<key>[,<key>...] (every path but /health then needs one), "
                "or pass --allow-no-keys (other machines still get 403 until keys are set)"
            )
        note = f"listening on {chosen} without MILLPOND_API_KEYS: other machines get 403"
    return chosen, note


def run(
    config_path: Path | str | None,
    host: str | None = None,
    port: int | None = None,
    allow_no_keys: bool = False,
) -> None:
    """Start uvicorn on the chosen address (raises BindRefused, ConfigError before that)."""
    import uvicorn

    from millpond.core.config_loading import find_config
    from millpond.serve.settings import get_settings, get_stack_config

    os.environ["MILLPOND_CONFIG"] = str(find_config(config_path))
    get_settings.cache_clear()
    get_stack_config.cache_clear()
    config = get_stack_config()  # a config error stops here, before uvicorn starts
    address, note = bind_host(config.serve.host, bool(get_settings().keys), host, allow_no_keys)
    if note:
        print(note)
    uvicorn.run("millpond.serve.app:app", host=address, port=port or config.serve.port)
