from django.urls import path

from inference import apis

urlpatterns = [
    path("models", apis.ModelListApi.as_view(), name="model-list"),
    path("models/<path:model_id>", apis.ModelDetailApi.as_view(), name="model-detail"),
]
