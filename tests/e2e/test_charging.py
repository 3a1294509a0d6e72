"""Charging end to end: real daphne, Celery and `sogni-worker` processes, the official openai SDK.

The hold is taken with the job, settled at the job's end for what the client got, released when it
got nothing; the worker's owner earns their share in SOGNI; the ledger sums to every balance.
"""

from decimal import Decimal

import openai
import pytest

from tests.e2e.charging_checks import (
    assert_charged,
    balances,
    entries_of,
    expected_usd,
    held,
    in_tokens,
    job_of,
    ledger_is_sound,
)
from tests.support.factories import SMOLLM2, account_create
from tests.support.openai_schema import validate
from tests.support.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SCRIPTED = "qwen3.5-35b-a3b-abliterated-gguf-q4km"
HI = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def client(live_platform, user) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_platform.url + "/v1", api_key=user.key, max_retries=0, timeout=120)


def sogni_credit(user, amount: str) -> None:
    from billing.services.adjustments import wallet_adjust

    operator = account_create(email="treasurer@example.com").user
    wallet = user.wallets.get(token_type="sogni")
    wallet_adjust(wallet=wallet, amount=Decimal(amount), reason="test credit", operator=operator, key="credit")


def test_token_type_chooses_the_wallet_charged_and_the_operator_earns_each_share(workers, client, user, operator):
    from accounts.services import user_default_token_type_set

    workers.start("scripted", engine="scripted", models=[SCRIPTED], extra=["--scripted-rate", "0"])
    sogni_credit(user.user, "100")
    prices = client.models.retrieve(SCRIPTED).model_extra["pricing"]
    start = balances(user.user)
    operator_start = balances(operator.user)

    spark_reply = client.chat.completions.create(model=SCRIPTED, messages=HI, extra_body={"token_type": "spark"})
    spark = assert_charged(completion_id=spark_reply.id, usage=spark_reply.model_dump()["usage"], pricing=prices)

    sogni_reply = client.chat.completions.create(
        model=SCRIPTED, messages=HI, extra_headers={"X-Token-Type": "sogni"}, max_tokens=4
    )
    assert sogni_reply.choices[0].finish_reason == "length"
    sogni_usage = sogni_reply.model_dump()["usage"]
    sogni = assert_charged(completion_id=sogni_reply.id, usage=sogni_usage, pricing=prices, token_type="sogni")

    # No choice in the request: the account's default applies.
    user_default_token_type_set(user=user.user, token_type="sogni")
    default_reply = client.chat.completions.create(model=SCRIPTED, messages=HI, max_tokens=4)
    default_usage = default_reply.model_dump()["usage"]
    default = assert_charged(completion_id=default_reply.id, usage=default_usage, pricing=prices, token_type="sogni")

    after = balances(user.user)
    assert after["spark"] == start["spark"] - spark
    assert after["sogni"] == start["sogni"] - sogni - default
    assert held(user.user) == {"spark": 0, "sogni": 0}
    rewards = sum(
        in_tokens(expected_usd(prices, **tokens(reply)) * Decimal("0.70"), "sogni", paying=False)
        for reply in (spark_reply, sogni_reply, default_reply)
    )
    assert balances(operator.user)["sogni"] == operator_start["sogni"] + rewards
    ledger_is_sound()


def tokens(reply) -> dict:
    return {"prompt_tokens": reply.usage.prompt_tokens, "completion_tokens": reply.usage.completion_tokens}


def test_a_failed_job_charges_nothing_and_releases_its_hold(workers, client, user):
    workers.start("smol")
    start = balances(user.user)
    # Longer than the worker's 1024-token context, shorter than the model's 8192: the worker refuses it.
    long_prompt = [{"role": "user", "content": "hello " * 1100}]

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=SMOLLM2, messages=long_prompt, max_tokens=8)
    assert caught.value.code == "context_length_exceeded"

    job = job_of(_only_job_public_id())
    assert job.status == "failed"
    assert set(entries_of(job)) == {"hold", "release"}
    assert balances(user.user) == start and held(user.user) == {"spark": 0, "sogni": 0}
    ledger_is_sound()


def _only_job_public_id() -> str:
    from inference.models import Job

    (public_id,) = Job.objects.values_list("public_id", flat=True)
    return public_id


def _first_chunks(stream, count: int) -> None:
    seen = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen += 1
            if seen == count:
                return


def test_a_worker_dying_mid_stream_charges_only_delivered_tokens_and_earns_nothing(workers, client, user, operator):
    slow = workers.start(
        "slow", engine="scripted", models=[SCRIPTED], extra=["--scripted-rate", "10", "--scripted-tokens", "200"]
    )
    prices = client.models.retrieve(SCRIPTED).model_extra["pricing"]
    start, operator_start = balances(user.user), balances(operator.user)

    stream = client.chat.completions.create(model=SCRIPTED, messages=HI, max_tokens=200, stream=True)
    _first_chunks(stream, 3)
    workers.kill(slow)
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    # The stream ends with `data: {"error": {...}}` in OpenAI's error shape.
    validate("ErrorResponse", {"error": caught.value.body})
    assert caught.value.code == "worker_disconnected"

    wait_until(lambda: job_of(_only_job_public_id()).status == "failed", timeout=30, what="job failed")
    job = job_of(_only_job_public_id())
    assert job.error_code == "worker_disconnected"
    assert 3 <= job.completion_tokens < 200
    charge = in_tokens(
        expected_usd(prices, prompt_tokens=0, completion_tokens=job.completion_tokens), "spark", paying=True
    )
    assert entries_of(job)["charge"] == -charge
    assert "reward" not in entries_of(job)
    assert balances(user.user)["spark"] == start["spark"] - charge
    assert balances(operator.user) == operator_start
    assert held(user.user) == {"spark": 0, "sogni": 0}
    ledger_is_sound()


def test_a_client_leaving_mid_stream_pays_its_prompt_and_what_it_got_and_the_worker_earns_its_share(
    workers, client, user, operator
):
    workers.start(
        "slow", engine="scripted", models=[SCRIPTED], extra=["--scripted-rate", "10", "--scripted-tokens", "200"]
    )
    prices = client.models.retrieve(SCRIPTED).model_extra["pricing"]
    operator_start = balances(operator.user)
    words_1500 = [{"role": "user", "content": " ".join(["word"] * 1500)}]

    stream = client.chat.completions.create(model=SCRIPTED, messages=words_1500, max_tokens=200, stream=True)
    _first_chunks(stream, 3)
    stream.close()

    wait_until(lambda: job_of(_only_job_public_id()).status == "cancelled", timeout=30, what="job cancelled")
    job = job_of(_only_job_public_id())
    assert 3 <= job.completion_tokens < 200
    # The prompt is charged at the platform's count of it.
    assert job.prompt_tokens == job.prompt_tokens_estimate > 1500
    usd = expected_usd(prices, prompt_tokens=job.prompt_tokens, completion_tokens=job.completion_tokens)
    assert entries_of(job)["charge"] == -in_tokens(usd, "spark", paying=True)
    reward = in_tokens(usd * Decimal("0.70"), "sogni", paying=False)
    assert balances(operator.user)["sogni"] == operator_start["sogni"] + reward
    assert held(user.user) == {"spark": 0, "sogni": 0}
    ledger_is_sound()
