from accounts.models import User
from accounts.services import api_key_reveal, user_signup
from billing.services.grants import account_verify

PASSWORD = "correct horse battery staple"


def verified_signup(*, email: str, password: str = PASSWORD) -> User:
    """A user made through the signup service who opened the verification link: starter grant credited."""
    user = user_signup(email=email, password=password)
    account_verify(user=user)
    user.refresh_from_db()
    return user


def signed_up(email: str) -> tuple[User, str]:
    """A verified user made through the signup service, and their raw key."""
    user = verified_signup(email=email)
    return user, api_key_reveal(api_key=user.api_key, actor=user)
