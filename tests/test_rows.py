"""sogni_platform.rows writes the rows Model.save() writes."""

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
    from sogni_platform.rows import insert

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
    from sogni_platform.rows import insert

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


def test_several_rows_in_one_statement_get_their_keys_in_order(user, django_assert_num_queries):
    from billing.models import LedgerEntry, Wallet
    from sogni_platform.rows import insert_many

    wallet = Wallet.objects.get(user=user, token_type="spark")
    fields = {"wallet": wallet, "kind": LedgerEntry.Kind.HOLD, "amount": Decimal("0"), "balance_after": Decimal("0")}
    entries = [LedgerEntry(idempotency_key=f"rows:{i}", held_change=i, held_after=i, **fields) for i in range(3)]
    with django_assert_num_queries(1):
        insert_many(entries)

    assert [LedgerEntry.objects.get(pk=e.pk).idempotency_key for e in entries] == ["rows:0", "rows:1", "rows:2"]


def test_an_update_writes_the_fields_save_would_and_no_others(user):
    from billing.models import Wallet
    from sogni_platform.rows import update

    wallet = Wallet.objects.get(user=user, token_type="sogni")
    Wallet.objects.filter(pk=wallet.pk).update(balance=Decimal("5"))  # not in the fields: must survive
    wallet.held, wallet.updated_at = Decimal("1.25"), wallet.updated_at.replace(year=2030)
    update(wallet, ["held", "updated_at"])

    stored = Wallet.objects.get(pk=wallet.pk)
    assert (stored.balance, stored.held, stored.updated_at) == (Decimal("5"), Decimal("1.25"), wallet.updated_at)
