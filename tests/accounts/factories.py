from accounts.models import User
from accounts.services import api_key_reveal, user_signup

PASSWORD = "correct horse battery staple"


def signed_up(email: str) -> tuple[User, str]:
    """A user made through the signup service, and their raw key."""
    user = user_signup(email=email, password=PASSWORD)
    return user, api_key_reveal(api_key=user.api_key, actor=user)
