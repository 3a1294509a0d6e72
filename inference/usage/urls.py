from django.urls import path

from inference.usage import apis

# Under v1/ (API key auth). The usage pages are the dashboard's (dashboard/urls.py).
api_urlpatterns = [path("generation", apis.GenerationApi.as_view(), name="generation")]
