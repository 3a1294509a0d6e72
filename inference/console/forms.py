from django import forms

from inference.models import Job


class JobFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *Job.Status.choices])
    model = forms.CharField(required=False, max_length=128)
    user = forms.CharField(required=False, max_length=254, label="User email")
    worker = forms.CharField(required=False, max_length=64, label="Worker (id or name)")


class WalletAdjustForm(forms.Form):
    amount = forms.DecimalField(max_digits=24, decimal_places=9, help_text="Signed: negative takes tokens away.")
    reason = forms.CharField(max_length=300)
    # One form submission = one adjustment, whatever the number of POSTs (billing is idempotent on it).
    key = forms.CharField(max_length=64, widget=forms.HiddenInput)


class KeyDisableForm(forms.Form):
    reason = forms.CharField(max_length=64, required=False)
