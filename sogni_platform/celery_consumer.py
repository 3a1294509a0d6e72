"""The Celery worker's broker consumer, reconnecting within seconds after a broker outage.

Celery's consumer reconnects with kombu's defaults, waiting 2, 4, 6 … up to 30 seconds between
attempts, so after a Redis restart a worker could sit idle for half a minute while queued jobs wait
for dispatch.
"""

import functools

from celery.worker.consumer import Consumer

RETRY = {"interval_start": 0.2, "interval_step": 0.3, "interval_max": 2.0}


class FastReconnectConsumer(Consumer):
    def ensure_connected(self, conn):
        conn.ensure_connection = functools.partial(conn.ensure_connection, **RETRY)
        return super().ensure_connected(conn)
