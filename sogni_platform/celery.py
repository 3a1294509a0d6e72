import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sogni_platform.settings")

app = Celery("sogni_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
