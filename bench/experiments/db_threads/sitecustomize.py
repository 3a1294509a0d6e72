"""Experiment only (never on a production path): put this folder on PYTHONPATH of the ASGI server,
e.g. `python -m bench.run --env PYTHONPATH=bench/experiments/db_threads`, and every Channels
`database_sync_to_async` call runs in the event loop's thread pool (thread_sensitive=False) instead of
asgiref's one process-wide thread. Measures recommendation 1 of README "Benchmarks" without editing
inference/."""

import channels.db

_init = channels.db.DatabaseSyncToAsync.__init__


def _init_pooled(self, func, thread_sensitive=True, executor=None, **kwargs):
    _init(self, func, thread_sensitive=False, executor=executor, **kwargs)


channels.db.DatabaseSyncToAsync.__init__ = _init_pooled
