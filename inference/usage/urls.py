from django.urls import path

from inference.usage import apis, views

app_name = "usage"

# Dashboard pages (session login).
urlpatterns = [
    path("usage/", views.usage, name="usage"),
    path("usage/export.csv", views.usage_export, name="usage-export"),
    path("workers/", views.workers, name="workers"),
]

# Under v1/ (API key auth).
api_urlpatterns = [path("generation", apis.GenerationApi.as_view(), name="generation")]
