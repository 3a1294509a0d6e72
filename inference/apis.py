from rest_framework.response import Response
from rest_framework.views import APIView

from inference.selectors import model_get, model_list
from sogni_platform.exceptions import NotFound


def model_payload(model) -> dict:
    return {
        "id": model.id,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": model.owned_by,
    }


class ModelListApi(APIView):
    def get(self, request):
        return Response({"object": "list", "data": [model_payload(model) for model in model_list()]})


class ModelDetailApi(APIView):
    def get(self, request, model_id: str):
        model = model_get(model_id=model_id)
        if model is None:
            raise NotFound(f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
        return Response(model_payload(model))
