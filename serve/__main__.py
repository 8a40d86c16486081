"""`python -m serve`: the same as `millpond serve` (serve.launch decides the address)."""

from __future__ import annotations

import argparse
import sys

from millpond.core.config import ConfigError
from millpond.serve.launch import BindRefused, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve", description=__doc__)
    parser.add_argument("--config", help="millpond.yml (default: MILLPOND_CONFIG or ./)")
    parser.add_argument("--host", help="address to listen on (see docs/serving.md)")
    parser.add_argument("--port", type=int, help="port (default: serve.port)")
    parser.add_argument("--allow-no-keys", action="store_true", help="see `millpond serve`")
    args = parser.parse_args(argv)
    try:
        run(args.config, args.host, args.port, args.allow_no_keys)
    except (BindRefused, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
