"""The operator's wallet adjustment form, shared by the Django admin and the operator console."""

from django import forms


class WalletAdjustForm(forms.Form):
    amount = forms.DecimalField(max_digits=24, decimal_places=9, help_text="Signed: negative takes tokens away.")
    reason = forms.CharField(max_length=300)
    # One form submission = one adjustment, whatever the number of POSTs (wallet_adjust is idempotent on it).
    key = forms.CharField(max_length=64, widget=forms.HiddenInput)
