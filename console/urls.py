from django.urls import path

from console import views

app_name = "console"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("workers/", views.workers, name="workers"),
    path("workers/<int:worker_id>/ban", views.worker_ban_view, name="worker-ban"),
    path("jobs/", views.jobs, name="jobs"),
    path("jobs/<str:public_id>/", views.job_detail, name="job"),
    path("revenue/", views.revenue, name="revenue"),
    path("accounts/", views.accounts, name="accounts"),
    path("accounts/<int:user_id>/", views.account_detail, name="account"),
    path("accounts/<int:user_id>/key/disable", views.key_disable_view, name="key-disable"),
    path("accounts/<int:user_id>/key/enable", views.key_enable_view, name="key-enable"),
    path("accounts/<int:user_id>/wallets/<str:token_type>/adjust", views.wallet_adjust_view, name="wallet-adjust"),
]
