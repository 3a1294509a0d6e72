"""A chat request's model: read once per MODEL_CACHE_SECONDS per process, anew at once after a change
saved in the same process."""

import time

from inference.models import LlmModel
from inference.selectors import model_resolve
from tests.support.factories import SMOLLM2


def test_a_model_disabled_in_this_process_is_refused_by_the_next_request(catalog, django_assert_num_queries):
    model = model_resolve(model_id=SMOLLM2)
    assert model is not None
    with django_assert_num_queries(0):
        assert model_resolve(model_id=SMOLLM2) == model

    model.enabled = False
    model.save(update_fields=["enabled"])  # as the operator console does
    assert model_resolve(model_id=SMOLLM2) is None


def test_a_change_made_by_another_process_applies_within_the_cache_time(catalog, settings):
    settings.MODEL_CACHE_SECONDS = 0.3
    assert model_resolve(model_id=SMOLLM2).output_price_usd_per_m != 7
    LlmModel.objects.filter(id=SMOLLM2).update(output_price_usd_per_m=7)  # no signal: another process's write
    assert model_resolve(model_id=SMOLLM2).output_price_usd_per_m != 7
    time.sleep(0.35)
    assert model_resolve(model_id=SMOLLM2).output_price_usd_per_m == 7


def test_the_default_model_and_unknown_names_are_answered_without_keeping_what_was_not_found(
    catalog, settings, django_assert_num_queries
):
    settings.MODEL_CACHE_SECONDS = 60
    default = model_resolve(model_id=None)
    assert default is not None and default.enabled
    with django_assert_num_queries(0):
        assert model_resolve(model_id=None) == default
    for _ in range(2):
        with django_assert_num_queries(1):  # an unknown id is looked up every time: no entry per name sent
            assert model_resolve(model_id="no-such-model") is None


def test_with_no_cache_time_every_request_reads_the_model(catalog, settings, django_assert_num_queries):
    settings.MODEL_CACHE_SECONDS = 0
    for _ in range(2):
        with django_assert_num_queries(1):
            assert model_resolve(model_id=SMOLLM2) is not None
