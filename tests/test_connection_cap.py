"""The cap on open client connections both HTTP servers keep (freeapi/serving/accept.py):
who is served, who gets the 503 and a clean close, who is closed at once. The servers
themselves are driven over real sockets in test_hostile_client.py."""

import logging

from freeapi.serving.accept import DROP, MAX_LINGERING, REFUSE, SERVE, ConnectionCap


def test_connections_within_the_cap_are_served_and_free_their_place_when_closed():
    cap = ConnectionCap(2, logging.getLogger("test"))
    assert [cap.admit(), cap.admit()] == [SERVE, SERVE]
    assert cap.admit() == REFUSE
    cap.closed(SERVE)
    assert cap.open == 1 and cap.admit() == SERVE
    assert (cap.open, cap.refused, cap.lingering) == (2, 1, 1)


def test_refusals_read_out_at_most_max_lingering_at_once_then_close_at_once():
    cap = ConnectionCap(0, logging.getLogger("test"))
    verdicts = [cap.admit() for _ in range(MAX_LINGERING + 2)]
    assert verdicts == [REFUSE] * MAX_LINGERING + [DROP, DROP]
    assert cap.refused == MAX_LINGERING + 2 and cap.lingering == MAX_LINGERING
    cap.closed(REFUSE)  # one read-out ended: the next refusal is read out again
    assert cap.admit() == REFUSE and cap.open == 0


def test_refusals_and_exhaustion_are_logged_once_per_interval_and_counted(caplog):
    cap = ConnectionCap(0, logging.getLogger("freeapi.test_cap"))
    with caplog.at_level(logging.WARNING, logger="freeapi.test_cap"):
        for _ in range(5):
            cap.admit()
            cap.exhausted("cannot accept connections: EMFILE")
    refused = [r for r in caplog.records if "server.max_connections=0" in r.getMessage()]
    exhausted = [r for r in caplog.records if "EMFILE" in r.getMessage()]
    assert len(refused) == 1 and len(exhausted) == 1
    assert cap.accept_failures == 5 and cap.refused == 5
