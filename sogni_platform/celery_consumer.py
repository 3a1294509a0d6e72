"""The Celery worker's broker consumer, reconnecting within seconds after a broker outage.

Celery's consumer reconnects with kombu's defaults, waiting 2, 4, 6 … up to 30 seconds between
attempts, so after a Redis restart a worker could sit idle for half a minute while queued jobs wait
for dispatch. No setting changes those intervals (`broker_transport_options` reach only kombu's
publishing retries), so this overrides `Consumer.ensure_connected`, an undocumented method: written
against Celery 5.7.0 and kombu 5.7.0, where it calls `conn.ensure_connection(errback, max_retries,
callback=…)`. tests/test_celery_consumer.py fails if an upgrade stops this override taking effect.
The class is installed by the documented `worker_consumer` setting (CELERY_WORKER_CONSUMER).
"""

import functools

from celery.worker.consumer import Consumer

RETRY = {"interval_start": 0.2, "interval_step": 0.3, "interval_max": 2.0}


class FastReconnectConsumer(Consumer):
    def ensure_connected(self, conn):
        conn.ensure_connection = functools.partial(conn.ensure_connection, **RETRY)
        return super().ensure_connected(conn)
