"""What accounts tells the apps above it, which it must not import."""

from django.dispatch import Signal

# An account's key stopped authenticating (disabled, regenerated, or the account deactivated), inside
# the transaction that did it. Sent with `user_id`; inference closes that owner's worker sockets after commit.
api_key_revoked = Signal()
