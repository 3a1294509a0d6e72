"""sogni_platform.inserts writes the row Model.save(force_insert=True) writes."""

from decimal import Decimal

import pytest
from django.forms.models import model_to_dict


@pytest.fixture
def user(db):
    from accounts.services import user_signup

    return user_signup(email="inserts@example.com", password="correct horse battery")


def _row(model, pk) -> dict:
    obj = model.objects.get(pk=pk)
    return {field.attname: getattr(obj, field.attname) for field in model._meta.concrete_fields}


def test_a_row_with_an_auto_key_gets_its_key_and_reads_back_as_the_orm_would_write_it(user):
    from billing.models import LedgerEntry, Wallet
    from sogni_platform.inserts import insert

    wallet = Wallet.objects.get(user=user, token_type="spark")
    fields = {"wallet": wallet, "kind": LedgerEntry.Kind.HOLD, "amount": Decimal("0"), "held_change": Decimal("1.5")}
    fields.update(balance_after=wallet.balance, held_after=Decimal("1.5"), job_id="j1", memo="m")
    ours = insert(LedgerEntry(idempotency_key="inserts:ours", **fields))
    theirs = LedgerEntry.objects.create(idempotency_key="inserts:theirs", **fields)

    assert ours.pk is not None and not ours._state.adding
    mine, orm = _row(LedgerEntry, ours.pk), _row(LedgerEntry, theirs.pk)
    for differs in ("id", "idempotency_key", "created_at"):
        mine.pop(differs), orm.pop(differs)
    assert mine == orm


def test_a_row_with_a_python_key_and_a_database_default_reads_back_whole(user):
    from inference.catalog import catalog_seed
    from inference.models import Job, LlmModel
    from sogni_platform.inserts import insert

    catalog_seed()
    job = Job(
        user=user,
        model=LlmModel.objects.first(),
        public_id="chatcmpl-inserts",
        request={"messages": [{"role": "user", "content": "hé"}], "n": None},
        max_tokens=5,
        reply_channel="r",
    )
    insert(job)

    assert model_to_dict(Job.objects.get(pk=job.pk)) == model_to_dict(job)
