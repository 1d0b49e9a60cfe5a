"""The env server's seat state machine, without sockets: one agent's life through start-up,
lagging, death, rejoins and removal, and the transitions it refuses."""

import pytest

from drima.env_server.seats import TRANSITIONS, SeatError, Seats, SeatState

S = SeatState


def started(n=3, liveness=2, remove=False) -> Seats:
    seats = Seats(n, liveness, remove_dead=remove)
    for i in range(n):
        assert seats.hello(i, 0)
        assert seats.ready(i, 0)
    assert seats.all_ready()
    seats.start()
    assert seats.waited_for() == set(range(n))
    return seats


def test_start_up_needs_hello_then_ready():
    seats = Seats(2, 3, remove_dead=False)
    assert not seats.greeted(0)  # a frame before its HELLO: ignored
    assert not seats.ready(0, 0)  # READY before HELLO is out of phase
    assert seats.hello(0, 0) and seats.greeted(0) and seats.state(0) is S.GREETED
    assert seats.ready(0, 0) and seats.state(0) is S.READY
    assert not seats.all_ready()
    assert not seats.judged(0)  # silence is not judged before the run starts


def test_a_late_agent_lags_and_acts_again():
    seats = started(liveness=2)
    seats.step_done(0, {0, 2}, "last")
    assert seats.state(1) is S.PLAYING and seats[1].missed == 1
    seats.step_done(1, {0, 2}, "last")
    assert seats.state(1) is S.LAGGING and seats.waited_for() == {0, 2}
    assert seats.gets_results(1) and seats.judged(1)  # alive: still sent results, still watched
    seats.step_done(2, {0, 1, 2}, "last")
    assert seats.state(1) is S.PLAYING and seats[1].missed == 0


def test_a_dead_agent_comes_back_with_a_fresh_result_then_plays():
    seats = started()
    seats.silent(1, 2.1, 4, step=7, missing_action="last")
    assert seats.state(1) is S.DEAD and not seats.gets_results(1) and 1 not in seats.waited_for()
    seats.heard(1, 3.0, step=9)  # any frame: it was frozen, not gone
    assert seats.state(1) is S.REJOINING and seats.fresh(1) and seats.gets_results(1)
    assert 1 not in seats.waited_for()
    seats.results_sent(10)
    assert seats.state(1) is S.PLAYING and 1 in seats.waited_for()
    assert [e["event"] for e in seats.events] == ["dead", "rejoined"]


def test_a_restarted_agent_says_hello_and_is_not_watched_until_ready():
    seats = started()
    assert seats.hello(2, 5)  # mid-run: a restarted agent
    assert seats.state(2) is S.GREETED and not seats.gets_results(2) and not seats.judged(2)
    assert seats.rejoining()  # the run is not abandoned while it builds its learner
    assert seats.ready(2, 5) and seats.state(2) is S.REJOINING and seats.fresh(2)
    seats.results_sent(6)
    assert seats.state(2) is S.PLAYING


def test_a_removed_agent_is_out_for_good():
    seats = started(remove=True)
    seats.silent(0, 2.0, 4, step=3, missing_action="remove")
    assert seats.state(0) is S.REMOVED
    assert not seats.hello(0, 4)  # answered with STOP
    seats.heard(0, 1.0, 4)
    assert seats.state(0) is S.REMOVED and not seats.gets_results(0)


def test_a_resumed_run_goes_on_without_the_agents_not_back():
    seats = Seats(3, 3, remove_dead=False)
    seats.hello(0, 100)
    seats.ready(0, 100)
    seats.hello(1, 100)  # said HELLO, still building its learner
    seats.start()
    assert seats.state(0) is S.PLAYING and seats.state(1) is S.GREETED and seats.state(2) is S.ABSENT
    assert seats.waited_for() == {0}
    assert seats.ready(1, 101) and seats.state(1) is S.REJOINING  # finishes joining mid-run


def test_every_transition_not_in_the_table_is_refused():
    seats = Seats(1, 3, remove_dead=False)
    for state in S:
        for to in S:
            seats[0].state = state
            if to in TRANSITIONS[state]:
                seats._move(0, to)
                assert seats.state(0) is to
            else:
                with pytest.raises(SeatError, match=f"{state.value} -> {to.value}"):
                    seats._move(0, to)
