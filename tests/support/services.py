"""`make test` needs PostgreSQL and Redis on 127.0.0.1; stop at once, saying which is missing and how to start it."""

import os
import socket
import sys
from urllib.parse import urlparse

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/sogni"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
    "(or set DATABASE_URL to a reachable server)",
    "Redis": "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no "
    "(or set REDIS_URL to a reachable server)",
}


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def missing_services() -> list[str]:
    problems = []
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if not _reachable(database_url, 5432):
        problems.append(f"PostgreSQL is not reachable at {database_url}. Start it: {HOW_TO_START['PostgreSQL']}")
    if not _reachable(redis_url, 6379):
        problems.append(f"Redis is not reachable at {redis_url}. Start it: {HOW_TO_START['Redis']}")
    return problems


def main() -> int:
    problems = missing_services()
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
