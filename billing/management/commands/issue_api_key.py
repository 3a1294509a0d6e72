"""`manage.py issue_api_key EMAIL`: the account (created if needed) and its key on stdout, for scripts."""

import secrets

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from accounts.models import User
from accounts.selectors import api_key_for_user
from accounts.services import api_key_create, api_key_reveal, user_signup
from billing.services.grants import account_verify


class Command(BaseCommand):
    help = "Create the account if needed and print a usable API key (only the key goes to stdout)."

    def add_arguments(self, parser):
        parser.add_argument("email")

    @transaction.atomic
    def handle(self, *args, email: str, **options):
        try:
            validate_email(email)
        except ValidationError as error:
            raise CommandError(f"Not a valid email address: {email!r}") from error
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            # A random strong password: the owner sets their own with a password reset or an operator.
            user = user_signup(email=email, password=secrets.token_urlsafe(32))
            account_verify(user=user)  # the operator vouches for the address: verified, starter grant credited
            self.stderr.write(f"Created account {user.email}.")
        api_key = api_key_for_user(user=user)
        if api_key is None:
            api_key, _ = api_key_create(user=user)
        if not api_key.is_enabled:
            raise CommandError(f"The API key of {user.email} is disabled ({api_key.disabled_reason or 'no reason'}).")
        if not user.is_active:
            raise CommandError(f"The account {user.email} is deactivated; its key would not authenticate.")
        self.stdout.write(api_key_reveal(api_key=api_key, actor=None, reason="manage.py issue_api_key"))
