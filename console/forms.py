from django import forms

from inference.models import Job


class JobFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *Job.Status.choices])
    model = forms.CharField(required=False, max_length=128)
    user = forms.CharField(required=False, max_length=254, label="User email")
    worker = forms.CharField(required=False, max_length=64, label="Worker (id or name)")


class KeyDisableForm(forms.Form):
    reason = forms.CharField(max_length=64, required=False)
