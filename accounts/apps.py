from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        from django.contrib.auth import get_user_model

        from accounts.models import ApiKey
        from accounts.selectors import api_keys_found_forget
        from ratelimits.models import AccountLimits

        for sender in (ApiKey, get_user_model(), AccountLimits):
            uid = f"api_keys_found_forget_{sender.__name__}"
            post_save.connect(api_keys_found_forget, sender=sender, dispatch_uid=uid)
            post_delete.connect(api_keys_found_forget, sender=sender, dispatch_uid=f"{uid}_deleted")
