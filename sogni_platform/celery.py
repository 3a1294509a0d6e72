import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sogni_platform.settings")

app = Celery("sogni_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect(weak=False)
def _worker_sends_on_its_own_loops(**kwargs) -> None:
    """A Celery worker runs no event loop: its threads' channel sends keep one each (inference.relay)."""
    from inference.relay import loop_per_thread

    loop_per_thread()
