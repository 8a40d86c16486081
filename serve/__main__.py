"""`python -m serve` (what `just serve` runs): uvicorn on the configured port, and on
127.0.0.1 whatever serve.host says when no API key is configured."""

from __future__ import annotations

import os

import uvicorn

from millpond.core.config_loading import find_config
from serve.settings import get_settings, get_stack_config


def main() -> None:
    os.environ["MILLPOND_CONFIG"] = str(find_config(get_settings().config))
    config = get_stack_config()
    host = config.serve.host if get_settings().keys else "127.0.0.1"
    if host != config.serve.host:
        print(f"no MILLPOND_API_KEYS: listening on 127.0.0.1, not {config.serve.host}")
    uvicorn.run("serve.app:app", host=host, port=config.serve.port)


if __name__ == "__main__":
    main()
