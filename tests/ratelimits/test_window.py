"""A reservation's correction (ADJUST) in both stores: Redis's script and the embedded mode's dict."""

import uuid

import pytest

from ratelimits.window import Mode, window_hit


@pytest.mark.parametrize("store", ["redis", "in-process"])
def test_a_reservation_is_corrected_in_its_own_bucket_and_never_below_zero(settings, store):
    if store == "in-process":
        settings.REDIS_URL = ""
    key = f"{settings.CHANNEL_LAYER_PREFIX}:test-window:{uuid.uuid4().hex}"

    reserved = window_hit(key=key, limit=0, amount=100, mode=Mode.ADD)
    later = window_hit(key=key, limit=0, amount=50, mode=Mode.ADD)
    assert later.used == 150
    # The request used 20 of its 100.
    assert window_hit(key=key, limit=0, amount=-80, mode=Mode.ADJUST, at=reserved.second).used == 70
    # A bucket that already left the window is not brought back.
    assert window_hit(key=key, limit=0, amount=-70, mode=Mode.ADJUST, at=reserved.second - 120).used == 70
    # A correction larger than its bucket empties that bucket only (the 50 too if they shared a second).
    emptied = window_hit(key=key, limit=0, amount=-1000, mode=Mode.ADJUST, at=reserved.second)
    assert emptied.used == (0 if later.second == reserved.second else 50)
    assert window_hit(key=key, limit=1000, amount=1000 - emptied.used, mode=Mode.CHECK).allowed
    assert not window_hit(key=key, limit=1000, amount=1001 - emptied.used, mode=Mode.CHECK).allowed
