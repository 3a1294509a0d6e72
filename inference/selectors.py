from inference.models import LlmModel


def model_list() -> list[LlmModel]:
    return list(LlmModel.objects.filter(enabled=True))


def model_get(*, model_id: str) -> LlmModel | None:
    return LlmModel.objects.filter(id=model_id, enabled=True).first()
