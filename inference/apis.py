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


def model_payload(model, *, counts: dict[str, int], features: dict[str, set[str]]) -> dict:
    return model_object(
        model,
        online_workers=counts.get(model.id, 0),
        is_default=_is_default(model),
        worker_features=features.get(model.id, set()),
    )


class ModelListApi(APIView):
    def get(self, request):
        counts = _online_worker_counts()
        features = selectors.online_worker_features()
        payloads = [model_payload(model, counts=counts, features=features) for model in selectors.model_list()]
        # For UIs that pre-select the first entry: the default model, then those online, then the rest.
        payloads.sort(key=lambda m: (not m["default"], m["status"] != "online"))
        return Response({"object": "list", "data": payloads})


class ModelDetailApi(APIView):
    def get(self, request, model_id: str):
        model = selectors.model_get(model_id=model_id)
        if model is None:
            raise NotFound(f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
        features = selectors.online_worker_features()
        return Response(model_payload(model, counts=_online_worker_counts(), features=features))
