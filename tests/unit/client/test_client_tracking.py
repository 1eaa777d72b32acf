"""Delivery-report correlation, commit bookkeeping and the inbound buffer (no I/O).

Promises checked: reports resolve receipts by key, key-less ones in production
order; a dropped connection marks waiting receipts unconfirmed; commits count only
handed-out messages of the current connection and restart from zero after a
reconnect; decode errors keep their place (and commit slot) in the stream.
"""

from __future__ import annotations

import pytest

from airflow_provider_app2app.client.errors import DecryptionError
from airflow_provider_app2app.client.tracking import (
    CommitTracker,
    DeliveryTracker,
    InboundBuffer,
)
from airflow_provider_app2app.protocol.messages import DeliveryReport, ReceivedMessage

TO = "kld://to"


def message(key: str | None) -> ReceivedMessage:
    return ReceivedMessage(key=key, sender="kld://from", recipient=TO, content=b"x")


def test_keyed_report_resolves_the_receipt_with_that_key_whatever_the_order():
    tracker = DeliveryTracker()
    first, second = tracker.register("a", TO), tracker.register("b", TO)
    tracker.acknowledged(first, "ok")
    tracker.acknowledged(second, "ok")
    assert tracker.report(DeliveryReport("b", 2)) is second
    assert tracker.report(DeliveryReport("a", 1)) is first
    assert first.delivered and second.delivered
    assert tracker.delivered_total == 2
    assert tracker.pending() == []


def test_keyless_reports_resolve_keyless_receipts_in_production_order():
    tracker = DeliveryTracker()
    receipts = [tracker.register(None, TO) for _ in range(3)]
    keyed = tracker.register("k", TO)
    for _ in range(3):
        tracker.report(DeliveryReport(None, 1))
    assert [r.delivered for r in receipts] == [True, True, True]
    assert not keyed.delivered


def test_repeated_key_resolves_oldest_first():
    tracker = DeliveryTracker()
    old, new = tracker.register("dup", TO), tracker.register("dup", TO)
    assert tracker.report(DeliveryReport("dup", 1)) is old
    assert tracker.report(DeliveryReport("dup", 2)) is new
    assert tracker.find("dup") is new


def test_report_arriving_before_the_ack_still_resolves_the_receipt():
    tracker = DeliveryTracker()
    receipt = tracker.register("early", TO)
    tracker.report(DeliveryReport("early", 5))
    tracker.acknowledged(receipt, "Message sent.")
    assert receipt.state == "delivered"
    assert receipt.ack_text == "Message sent."


def test_unmatched_report_is_counted_and_findable_by_key():
    tracker = DeliveryTracker()
    assert tracker.report(DeliveryReport("stranger", 1)) is None
    assert tracker.unmatched_total == 1
    assert tracker.find("stranger") == DeliveryReport("stranger", 1)


def test_failed_receipt_is_never_resolved_by_a_later_report():
    tracker = DeliveryTracker()
    failed, ok = tracker.register(None, TO), tracker.register(None, TO)
    tracker.failed(failed, "rejected")
    assert tracker.report(DeliveryReport(None, 1)) is ok
    assert failed.state == "failed"


def test_connection_loss_marks_acknowledged_receipts_unconfirmed():
    tracker = DeliveryTracker()
    waiting, sending = tracker.register("w", TO), tracker.register("s", TO)
    tracker.acknowledged(waiting, "ok")
    lost = tracker.connection_lost()
    assert lost == [waiting]
    assert waiting.state == "unconfirmed" and waiting.settled
    assert sending.state == "sending"
    assert tracker.report(DeliveryReport("w", 1)) is None


def test_commits_count_handed_out_messages_oldest_first():
    commits = CommitTracker()
    number = commits.connection_opened()
    assert [commits.handed_out(number) for _ in range(3)] == [1, 2, 3]
    assert commits.take() == 1
    assert commits.outstanding == 2
    assert commits.committed_total == 1


def test_commit_through_a_message_commits_every_earlier_one_too():
    commits = CommitTracker()
    buffer = InboundBuffer()
    number = commits.connection_opened()
    for key in "abc":
        buffer.put(number, message(key))
    handed = [buffer.pop(commits) for _ in range(3)]
    assert commits.take(handed[1]) == 2
    assert commits.take(handed[1]) == 0
    assert commits.take(handed[2]) == 1


def test_reconnect_restarts_commit_counting_and_skips_old_messages():
    commits = CommitTracker()
    buffer = InboundBuffer()
    first = commits.connection_opened()
    buffer.put(first, message("old"))
    old = buffer.pop(commits)
    assert commits.connection_closed() == 1
    second = commits.connection_opened()
    assert second == first + 1
    assert commits.outstanding == 0
    assert commits.take(old) == 0
    assert commits.take() == 0
    buffer.put(second, message("new"))
    new = buffer.pop(commits)
    assert (new.connection, new.sequence) == (second, 1)
    assert commits.take(new) == 1


def test_no_commit_while_the_connection_is_down():
    commits = CommitTracker()
    number = commits.connection_opened()
    commits.handed_out(number)
    commits.connection_closed()
    assert commits.take() == 0
    assert commits.handed_out(number) == 0


def test_buffer_drops_only_the_closed_connection_items():
    buffer = InboundBuffer()
    buffer.put(1, message("a"))
    buffer.put(2, message("b"))
    assert buffer.drop_connection(1) == 1
    commits = CommitTracker()
    commits.connection_opened()
    commits.connection_opened()
    assert buffer.pop(commits).key == "b"


def test_decode_error_is_raised_in_place_and_takes_a_commit_slot():
    commits = CommitTracker()
    buffer = InboundBuffer()
    number = commits.connection_opened()
    buffer.put(number, None, DecryptionError("cannot open", key="bad"))
    buffer.put(number, message("good"))
    with pytest.raises(DecryptionError):
        buffer.pop(commits)
    assert commits.outstanding == 1
    assert commits.take() == 1
    good = buffer.pop(commits)
    assert (good.key, good.sequence) == ("good", 2)


def test_a_redelivered_message_compares_equal_to_its_first_delivery():
    commits = CommitTracker()
    buffer = InboundBuffer()
    first = commits.connection_opened()
    buffer.put(first, message("same"))
    before = buffer.pop(commits)
    commits.connection_closed()
    second = commits.connection_opened()
    buffer.put(second, message("same"))
    after = buffer.pop(commits)
    assert before == after
    assert (before.connection, after.connection) == (first, second)
    assert isinstance(after, ReceivedMessage)
