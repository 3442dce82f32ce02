"""A speaker group's announcement queue (voice.queue): seq order, recall merging, no overlap."""

from __future__ import annotations

from hypothesis import given, strategies as st

from voice.queue import SEEN_SEQS, AnnouncementQueue


def announce(seq: int, window: int, number: str, recall: int = 0) -> dict:
    return {"type": "announce", "seq": seq, "window": window, "number": number, "recall": recall}


def drain(queue: AnnouncementQueue) -> list[tuple[int, str, int]]:
    played = []
    while (entry := queue.start()) is not None:
        played.append((entry.seq, entry.number, entry.recall))
        queue.done()
    return played


def test_plays_in_seq_order_whatever_the_arrival_order():
    queue = AnnouncementQueue()
    for seq, window, number in ((7, 2, "B001"), (5, 1, "A001"), (9, 3, "C001")):
        assert queue.offer(announce(seq, window, number)) == "queued"
    assert drain(queue) == [(5, "A001", 0), (7, "B001", 0), (9, "C001", 0)]


def test_a_recall_of_a_queued_call_merges_keeping_its_place():
    queue = AnnouncementQueue()
    queue.offer(announce(1, 1, "A001"))
    queue.offer(announce(2, 2, "B001"))
    assert queue.offer(announce(3, 1, "A001", recall=1)) == "merged"
    assert queue.offer(announce(4, 1, "A001", recall=2)) == "merged"
    assert len(queue) == 2
    first = queue.start()
    assert (first.seq, first.recall, first.merged, first.message["recall"]) == (1, 2, 2, 2)
    queue.done()
    assert drain(queue) == [(2, "B001", 0)]


def test_the_same_number_at_another_window_is_another_call():
    queue = AnnouncementQueue()
    queue.offer(announce(1, 1, "A001"))
    assert queue.offer(announce(2, 2, "A001")) == "queued"


def test_one_at_a_time_and_a_recall_of_the_one_playing_is_queued_again():
    queue = AnnouncementQueue()
    queue.offer(announce(1, 1, "A001"))
    queue.offer(announce(2, 2, "B001"))
    playing = queue.start()
    assert playing.seq == 1 and queue.start() is None  # no overlap
    assert queue.offer(announce(3, 1, "A001", recall=1)) == "queued"
    queue.done()
    assert drain(queue) == [(2, "B001", 0), (3, "A001", 1)]


def test_a_redelivered_announce_plays_once():
    queue = AnnouncementQueue()
    queue.offer(announce(1, 1, "A001"))
    drain(queue)
    assert queue.offer(announce(1, 1, "A001")) == "duplicate"
    assert drain(queue) == []


def test_remembered_seqs_are_bounded():
    queue = AnnouncementQueue()
    for seq in range(SEEN_SEQS * 2):
        queue.offer(announce(seq, 1, f"A{seq:03d}"))
        queue.start()
        queue.done()
    assert len(queue._seqs) == SEEN_SEQS


calls = st.lists(st.tuples(st.integers(1, 4), st.integers(1, 6)), min_size=1, max_size=40)


@given(calls, st.randoms(use_true_random=False))
def test_order_merge_and_no_overlap_properties(offers, rnd):
    """Offers (window, ticket) in seq order, played at random moments: the played sequence is
    in seq order, never says a queued call twice, and the recall count it says is the
    highest offered while it waited."""
    queue = AnnouncementQueue()
    recalls: dict[tuple[int, str], int] = {}
    highest_while_queued: dict[int, int] = {}
    played = []
    for seq, (window, ticket) in enumerate(offers, 1):
        call = (window, f"A{ticket:03d}")
        recall = recalls[call] = recalls.get(call, -1) + 1
        outcome = queue.offer(announce(seq, *call, recall=recall))
        queued = [e for e in queue if e.call == call]
        assert len(queued) == 1 and queued[0].recall == recall
        if outcome == "queued":
            highest_while_queued[seq] = recall
        else:
            assert outcome == "merged"
            highest_while_queued[queued[0].seq] = recall
        if rnd.random() < 0.4:
            entry = queue.start()
            if entry is not None:
                assert queue.start() is None
                played.append(entry)
                queue.done()
    played += [e for e in iter(queue.start, None) if queue.done() is None]
    seqs = [e.seq for e in played]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(e.recall == highest_while_queued[e.seq] for e in played)
    assert sum(1 + e.merged for e in played) == len(offers)
