"""Rows a hot path reads on every request, reused for a few seconds per process."""

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from django.conf import settings

Row = TypeVar("Row")


class RecentRows(Generic[Row]):
    """Rows by key, each reused for as many seconds as the setting `seconds_setting` says (read at each
    load; 0: never kept). Only rows found are kept, at most `max_size` (then all are dropped); a kept row
    is never changed in place by its readers. `forget` (a post_save/post_delete receiver) drops them all."""

    def __init__(self, seconds_setting: str, *, max_size: int = 10_000) -> None:
        self.seconds_setting = seconds_setting
        self.max_size = max_size
        self._rows: dict[Hashable, tuple[float, Row]] = {}

    def get(self, key: Hashable, load: Callable[[], Row | None]) -> Row | None:
        now = time.monotonic()
        kept = self._rows.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        row = load()
        seconds = getattr(settings, self.seconds_setting)
        if row is not None and seconds > 0:
            if len(self._rows) >= self.max_size:
                self._rows.clear()
            self._rows[key] = (now + seconds, row)
        return row

    def forget(self, **kwargs) -> None:
        self._rows.clear()
