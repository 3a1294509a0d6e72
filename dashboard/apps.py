from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """A user's own pages over every app's rows: the dashboard (account, wallet, API key), Usage and Workers.
    Their actions are the owning apps' views (accounts' key dialog, billing's wallet panel)."""

    name = "dashboard"
