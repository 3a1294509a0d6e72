from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class InferenceConfig(AppConfig):
    name = "inference"

    def ready(self):
        from accounts.signals import api_key_revoked
        from inference.models import LlmModel
        from inference.selectors import models_resolved_forget
        from inference.services.workers import owner_key_revoked

        api_key_revoked.connect(owner_key_revoked, dispatch_uid="owner_key_revoked")

        post_save.connect(models_resolved_forget, sender=LlmModel, dispatch_uid="models_resolved_forget")
        post_delete.connect(models_resolved_forget, sender=LlmModel, dispatch_uid="models_resolved_forget_deleted")
