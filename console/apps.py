from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator console, /console/: pages over every app's rows; actions call the owning app's services."""

    name = "console"
