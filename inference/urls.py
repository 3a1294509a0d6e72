from django.urls import path

from inference import apis, responses, views

urlpatterns = [
    path("chat/completions", views.chat_completions, name="chat-completions"),
    path("responses", responses.responses, name="responses"),
    path("responses/<str:response_id>", responses.response_detail, name="response-detail"),
    path("completions", views.completions, name="completions"),
    path("models", apis.ModelListApi.as_view(), name="model-list"),
    path("models/<path:model_id>", apis.ModelDetailApi.as_view(), name="model-detail"),
]
