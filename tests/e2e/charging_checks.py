"""What a completion must have cost, computed here from the published prices, and the ledger checks
the end-to-end suites run after each call."""

from decimal import ROUND_DOWN, ROUND_UP, Decimal

SPARK_USD = Decimal("0.005")
SOGNI_USD = Decimal("0.01")  # the rate the tests set
WORKER_SHARE = Decimal("0.70")  # settings.WORKER_REWARD_SHARE's default
PLACES = Decimal("0.000000001")


def sogni_rate_set() -> None:
    """Transactional tests flush the migration's seeded rate."""
    from billing.models import SogniRate

    SogniRate.objects.all().delete()
    SogniRate.objects.create(usd_per_sogni=SOGNI_USD)


def limits_lifted(user) -> None:
    from ratelimits.services import account_limits_set

    account_limits_set(user=user, requests_per_minute=0, tokens_per_minute=0, note="e2e tests")


def expected_usd(pricing: dict, *, prompt_tokens: int, completion_tokens: int) -> Decimal:
    """`pricing` is a model's `pricing` object from GET /v1/models/{id} (USD per 1M tokens)."""
    return (
        prompt_tokens * Decimal(pricing["input_usd_per_1m"]) + completion_tokens * Decimal(pricing["output_usd_per_1m"])
    ) / Decimal(1_000_000)


def in_tokens(usd: Decimal, token_type: str, *, paying: bool) -> Decimal:
    """A payer's amount rounds up, an earner's down, to the ledger's 9 places."""
    rate = SPARK_USD if token_type == "spark" else SOGNI_USD
    return (usd / rate).quantize(PLACES, rounding=ROUND_UP if paying else ROUND_DOWN)


def balances(user) -> dict[str, Decimal]:
    from billing.models import Wallet

    return {w.token_type: w.balance for w in Wallet.objects.filter(user=user)}


def held(user) -> dict[str, Decimal]:
    from billing.models import Wallet

    return {w.token_type: w.held for w in Wallet.objects.filter(user=user)}


def job_of(completion_id: str):
    from inference.models import Job

    return Job.objects.select_related("worker__owner").get(public_id=completion_id)


def entries_of(job) -> dict[str, Decimal]:
    """Ledger entries posted for one job (billing's job_id is str(job.id)), by kind."""
    from billing.models import LedgerEntry

    return {e.kind: e.amount for e in LedgerEntry.objects.filter(job_id=str(job.id))}


def ledger_is_sound() -> None:
    from billing.selectors import ledger_invariant_violations

    assert ledger_invariant_violations() == []


def assert_charged(*, completion_id: str, usage: dict, pricing: dict, token_type: str = "spark") -> Decimal:
    """The job behind `completion_id` was charged exactly usage × price in `token_type`, the reply's
    usage.cost says so, and its worker's owner earned exactly their share in SOGNI. Returns the charge."""
    job = job_of(completion_id)
    assert (job.prompt_tokens, job.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    usd = expected_usd(pricing, prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"])
    charge = in_tokens(usd, token_type, paying=True)
    entries = entries_of(job)
    assert entries["charge"] == -charge, entries
    assert usage["cost"] == {
        "token_type": token_type,
        "amount": f"{charge.normalize():f}",
        "usd": f"{usd.normalize():f}",
    }
    reward = in_tokens(usd * WORKER_SHARE, "sogni", paying=False)
    assert entries.get("reward", Decimal(0)) == reward, entries
    assert reward > 0
    ledger_is_sound()
    return charge
