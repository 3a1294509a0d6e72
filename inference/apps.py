from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class InferenceConfig(AppConfig):
    name = "inference"

    def ready(self):
        from inference.models import LlmModel
        from inference.selectors import models_resolved_forget

        post_save.connect(models_resolved_forget, sender=LlmModel, dispatch_uid="models_resolved_forget")
        post_delete.connect(models_resolved_forget, sender=LlmModel, dispatch_uid="models_resolved_forget_deleted")
