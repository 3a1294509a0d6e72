"""sogni_platform.prepared.PreparedGet finds what the ORM finds, with select_related in the one statement."""

import pytest


@pytest.fixture
def accounts(db):
    from accounts.services import user_signup
    from ratelimits.services import account_limits_set

    limited = user_signup(email="limited@example.com", password="correct horse battery")
    account_limits_set(user=limited, requests_per_minute=7, tokens_per_minute=0, note="test")
    plain = user_signup(email="plain@example.com", password="correct horse battery")
    return limited, plain


def test_a_key_comes_with_its_user_and_limits_in_one_statement_as_the_orm_builds_them(
    accounts, django_assert_num_queries
):
    from accounts.models import ApiKey
    from ratelimits.models import AccountLimits
    from sogni_platform.prepared import PreparedGet

    by_lookup_id = PreparedGet(
        lambda lookup_id: ApiKey.objects.select_related("user__rate_limits").filter(lookup_id=lookup_id)
    )
    limited, plain = accounts
    for user in (limited, plain):
        orm = ApiKey.objects.select_related("user__rate_limits").get(user=user)
        with django_assert_num_queries(1):
            key = by_lookup_id.get(orm.lookup_id)
            assert (key.pk, key.secret_hash, key.user.email, key.user.is_active) == (
                orm.pk, orm.secret_hash, user.email, True
            )  # fmt: skip
            if user is limited:
                assert key.user.rate_limits.requests_per_minute == 7
            else:
                with pytest.raises(AccountLimits.DoesNotExist):
                    _ = key.user.rate_limits  # cached as missing: raises without a query
    assert by_lookup_id.get("no-such-key") is None


def test_a_model_lookup_keeps_the_querysets_other_conditions(db):
    from inference.catalog import catalog_seed
    from inference.models import LlmModel
    from inference.selectors import model_get

    catalog_seed()
    model = LlmModel.objects.first()
    assert model_get(model_id=model.id).output_price_usd_per_m == model.output_price_usd_per_m
    LlmModel.objects.filter(pk=model.pk).update(enabled=False)
    assert model_get(model_id=model.id) is None


def test_typed_parameters_used_twice_and_annotations_come_back_as_the_orm_gives_them(db):
    from django.db.models import Count, IntegerField, Subquery, UUIDField

    from accounts.services import user_signup
    from inference.catalog import catalog_seed
    from inference.models import Job, LlmModel
    from sogni_platform.prepared import PreparedGet, typed

    catalog_seed()
    user = user_signup(email="typed@example.com", password="correct horse battery")
    model = LlmModel.objects.first()
    jobs = [Job.objects.create(user=user, model=model, public_id=f"c-{i}", request={}, max_tokens=1, reply_channel="r")
            for i in range(2)]  # fmt: skip
    by_id = PreparedGet(
        lambda job_id, owner: (
            Job.objects.select_related("model")
            .filter(id=typed(job_id, UUIDField()), user_id=typed(owner, IntegerField()))
            .annotate(
                same_owner=Subquery(
                    Job.objects.filter(user_id=typed(owner, IntegerField()))
                    .values("user_id")
                    .annotate(n=Count("id"))
                    .values("n")[:1]
                )
            )
        ),
        arity=2,
    )

    found = by_id.get(str(jobs[1].pk), str(user.pk))
    assert (found.pk, found.public_id, found.model.id, found.same_owner) == (jobs[1].pk, "c-1", model.id, 2)
    assert by_id.get(str(jobs[1].pk), str(user.pk + 1)) is None
