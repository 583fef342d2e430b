"""The rule that tells a batch the broker lost from one still waiting its turn (pure, no broker)."""

from __future__ import annotations

from indexer.celery_app import RETRY_COUNTDOWN_MAX_S, make_app
from indexer.redelivery import MARGIN_S, LossRule
from tests.queue_helpers import WorkerEnv


def test_the_limits_come_from_the_brokers_redelivery_settings(tmp_path):
    app = make_app(WorkerEnv("redis://127.0.0.1:6379/0", tmp_path / "s.sqlite", visibility_timeout_s=10).settings())
    rule = LossRule.for_app(app)
    # a dead worker's message returns within 10 s + one 1-s sweep; waited out twice over, plus the margin
    assert rule.pending_after_s == 10 + 2 * 1 + MARGIN_S
    assert rule.retry_after_s == rule.pending_after_s + RETRY_COUNTDOWN_MAX_S
    default = LossRule.for_app(make_app(WorkerEnv("redis://127.0.0.1:6379/0", tmp_path / "s.sqlite").settings()))
    assert default.pending_after_s == 600 + 2 * 10 + MARGIN_S


def test_only_a_batch_left_waiting_by_an_empty_queue_is_lost():
    rule = LossRule(pending_after_s=30, retry_after_s=150)
    assert rule.lost("PENDING", 31, 31)
    assert not rule.lost("PENDING", 29, 31), "not waited long enough"
    assert not rule.lost("PENDING", 31, 29), "the queue emptied too recently: a dead worker's message may still come back"
    assert not rule.lost("PENDING", 1000, None), "messages still queued: it may be behind them"
    assert not rule.lost("STARTED", 1000, 1000), "a started batch's message is unacknowledged: the broker redelivers it"
    assert not rule.lost("RETRY", 100, 100), "a retry may wait out its countdown"
    assert rule.lost("RETRY", 151, 151)


def test_looking_at_a_queue_on_a_broker_that_is_down_raises_a_broker_error(tmp_path):
    """``wait`` treats it as an outage (and keeps its own limit on those) instead of hanging in reconnects."""
    import pytest

    from indexer.redelivery import broker_errors
    from indexer.redelivery import queue_length
    from tests.queue_helpers import _free_port

    app = make_app(WorkerEnv(f"redis://127.0.0.1:{_free_port()}/0", tmp_path / "s.sqlite").settings())
    with pytest.raises(broker_errors()):
        queue_length(app, "nowhere")
