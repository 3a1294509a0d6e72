from django.conf import settings
from rest_framework.response import Response
from rest_framework.views import APIView

from inference import selectors
from inference.openai.model_objects import model_object
from sogni_platform.exceptions import NotFound


def _online_worker_counts() -> dict[str, int]:
    counts = getattr(selectors, "online_worker_counts", None)
    return counts() if counts is not None else {}


def _is_default(model) -> bool:
    return model.is_embedded_default if settings.EMBEDDED else model.is_default


def model_payload(model, *, counts: dict[str, int]) -> dict:
    return model_object(model, online_workers=counts.get(model.id, 0), is_default=_is_default(model))


class ModelListApi(APIView):
    def get(self, request):
        counts = _online_worker_counts()
        models = selectors.model_list()
        return Response({"object": "list", "data": [model_payload(model, counts=counts) for model in models]})


class ModelDetailApi(APIView):
    def get(self, request, model_id: str):
        model = selectors.model_get(model_id=model_id)
        if model is None:
            raise NotFound(f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
        return Response(model_payload(model, counts=_online_worker_counts()))
