"""Each agent's seat at the env server: one object per agent, named states, and every change of
state in this module. No sockets and no clocks here: the server tells the table what happened
(a HELLO, a READY, a frame, a silence, an action, a missed step, results sent) and asks it whom
to wait for, whom to send results to and whose silence to judge.

    ABSENT     has not said HELLO to this process. Its frames are ignored: an agent of a server
               that died, still mid-step, finds this one silent, reconnects and says HELLO.
    GREETED    said HELLO and got its SPEC; it is building its learner and linking up with its
               neighbours. Not waited for, sent no results, its silence not judged.
    READY      (start-up) said READY: it plays from the first step.
    REJOINING  (mid-run) said READY, or was heard again after being declared dead: at the next
               step it gets the current observation with no reward (the reward was for an action
               it did not take), then it plays.
    PLAYING    its action is waited for at every step.
    LAGGING    alive (it heartbeats) but without an action for agent_liveness steps: no longer
               waited for, its seat plays missing_action; its next action makes it PLAYING.
    DEAD       silent for heartbeat_liveness intervals: not waited for, sent nothing, its seat
               plays missing_action. Any frame from it: REJOINING; a HELLO: GREETED.
    REMOVED    dead with missing_action=remove: out for good (a HELLO is answered with STOP).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from drima.events import EventFeed

log = logging.getLogger("drima.env_server")


class SeatState(enum.Enum):
    ABSENT = "absent"
    GREETED = "greeted"
    READY = "ready"
    REJOINING = "rejoining"
    PLAYING = "playing"
    LAGGING = "lagging"
    DEAD = "dead"
    REMOVED = "removed"


S = SeatState
# the only changes of state there are; anything else is a bug in the caller
TRANSITIONS: dict[SeatState, frozenset[SeatState]] = {
    S.ABSENT: frozenset({S.GREETED}),
    S.GREETED: frozenset({S.GREETED, S.READY, S.REJOINING}),
    S.READY: frozenset({S.GREETED, S.PLAYING}),
    S.REJOINING: frozenset({S.GREETED, S.PLAYING, S.DEAD, S.REMOVED}),
    S.PLAYING: frozenset({S.GREETED, S.LAGGING, S.DEAD, S.REMOVED}),
    S.LAGGING: frozenset({S.GREETED, S.PLAYING, S.DEAD, S.REMOVED}),
    S.DEAD: frozenset({S.GREETED, S.REJOINING}),
    S.REMOVED: frozenset(),
}
IN_RUN = frozenset({S.PLAYING, S.LAGGING, S.REJOINING})  # sent results; their silence is judged
COUNTED = frozenset({S.PLAYING, S.LAGGING})  # their missed steps are counted


class SeatError(RuntimeError):
    """A change of state that the seat machine does not allow (a bug in the env server)."""


@dataclass
class Seat:
    agent: int
    state: SeatState = SeatState.ABSENT
    missed: int = 0
    """consecutive steps without an action (PLAYING, LAGGING)"""
    warned_absent: bool = False
    """a frame before its HELLO was already logged"""


class Seats:
    """The seats of one run: n agents, a state machine each."""

    def __init__(self, n_agents: int, agent_liveness: int, remove_dead: bool, feed: EventFeed | None = None):
        """`feed`: where every event also goes the moment it happens (the dashboard reads it)."""
        self.seats = [Seat(i) for i in range(n_agents)]
        self.agent_liveness = agent_liveness
        self.remove_dead = remove_dead
        self.running = False  # past start-up: a HELLO now means a rejoin
        self.events: list[dict] = []  # deaths and rejoins, for stats.json
        self.feed = feed

    def record(self, event: dict, kept: bool = True) -> None:
        """An event for the feed, and (kept) for stats.json's agent_events."""
        if kept:
            self.events.append(event)
        if self.feed is not None:
            self.feed.write(event)

    def __getitem__(self, agent: int) -> Seat:
        return self.seats[agent]

    def state(self, agent: int) -> SeatState:
        return self.seats[agent].state

    def _move(self, agent: int, to: SeatState) -> None:
        seat = self.seats[agent]
        if to not in TRANSITIONS[seat.state]:
            raise SeatError(f"agent {agent}: {seat.state.value} -> {to.value} is not a seat transition")
        seat.state = to

    # -- what the env server asks --------------------------------------------------------------
    def in_state(self, *states: SeatState) -> list[int]:
        return [s.agent for s in self.seats if s.state in states]

    def waited_for(self) -> set[int]:
        """Agents whose action this step is waited for."""
        return {s.agent for s in self.seats if s.state is S.PLAYING}

    def gets_results(self, agent: int) -> bool:
        return self.seats[agent].state in IN_RUN

    def fresh(self, agent: int) -> bool:
        """Its next result carries the observation only (it did not act at the step before)."""
        return self.seats[agent].state is S.REJOINING

    def judged(self, agent: int) -> bool:
        """Its silence can make it dead: it is in the run."""
        return self.running and self.seats[agent].state in IN_RUN

    def rejoining(self) -> bool:
        """Someone is on the way back in (GREETED mid-run or REJOINING)."""
        return any(s.state is S.REJOINING or (self.running and s.state is S.GREETED) for s in self.seats)

    def all_ready(self) -> bool:
        return all(s.state is S.READY for s in self.seats)

    # -- what happened -------------------------------------------------------------------------
    def hello(self, agent: int, step: int) -> bool:
        """A HELLO: it gets its SPEC (True), or a STOP if it was removed (False)."""
        seat = self.seats[agent]
        if seat.state is S.REMOVED:
            return False
        if self.running:
            log.info("agent %d says hello at step %d: sending its spec for a rejoin", agent, step)
        self._move(agent, S.GREETED)
        return True

    def greeted(self, agent: int) -> bool:
        """False (logged once) for an agent that has not said HELLO to this process."""
        seat = self.seats[agent]
        if seat.state is not S.ABSENT:
            return True
        if not seat.warned_absent:
            log.warning("agent %d sends frames without a HELLO to this server (it ran with an earlier one): "
                        "ignored until it says HELLO", agent)
            seat.warned_absent = True
        return False

    def ready(self, agent: int, step: int) -> bool:
        """A READY; False when it comes outside the agent's handshake."""
        state = self.seats[agent].state
        if state is S.GREETED and not self.running:
            self._move(agent, S.READY)
        elif state is S.GREETED:
            log.info("agent %d is ready: it rejoins at step %d", agent, step + 1)
            self._move(agent, S.REJOINING)
        elif state is not S.REJOINING:  # REJOINING: a READY after coming back from silence
            return False
        return True

    def heard(self, agent: int, silent_s: float, step: int) -> None:
        """Any valid frame from a greeted agent. A dead one is back (frozen, or reconnected)."""
        if self.seats[agent].state is S.DEAD:
            log.info("agent %d is back after %.2f s of silence (step %d)", agent, silent_s, step)
            self._move(agent, S.REJOINING)

    def start(self) -> None:
        """Start-up is over: the ready agents play. (A resumed run may go on without some: those
        that said HELLO finish joining as rejoining agents, the others may say HELLO later.)"""
        for seat in self.seats:
            if seat.state is S.READY:
                self._move(seat.agent, S.PLAYING)
        self.running = True

    def silent(self, agent: int, silent_s: float, heartbeats: int, step: int, missing_action: str) -> None:
        """Silent for the whole liveness window (`heartbeats` intervals): dead, or removed for good."""
        remove = self.remove_dead
        log.warning("agent %d silent for %.2f s (%d missed heartbeats) at step %d: %s", agent, silent_s, heartbeats,
                    step,
                    "removing it from the run" if remove else
                    f"not waiting for it; its seat plays missing_action={missing_action}")
        self.record({"event": "dead", "agent": agent, "step": step, "silent_s": round(silent_s, 3)}
                    | ({"removed": True} if remove else {}))
        self._move(agent, S.REMOVED if remove else S.DEAD)

    def step_done(self, step: int, acted: set[int], missing_action: str) -> None:
        """After the actions of `step` were collected: reset or count each agent's missed steps."""
        for seat in self.seats:
            if seat.agent in acted:
                if seat.state is S.LAGGING:
                    log.info("agent %d acts again at step %d", seat.agent, step)
                    self.record({"event": "acting", "agent": seat.agent, "step": step}, kept=False)
                    self._move(seat.agent, S.PLAYING)
                seat.missed = 0
            elif seat.state in COUNTED:
                seat.missed += 1
                if seat.missed == self.agent_liveness:
                    log.warning("agent %d alive but without an action for %d steps: not waiting for it "
                                "(missing_action=%s)", seat.agent, seat.missed, missing_action)
                    self.record({"event": "late", "agent": seat.agent, "step": step, "missed": seat.missed},
                                kept=False)
                    self._move(seat.agent, S.LAGGING)

    def results_sent(self, step: int) -> None:
        """The rejoining agents got their first result: they play from here."""
        for seat in self.seats:
            if seat.state is S.REJOINING:
                self.record({"event": "rejoined", "agent": seat.agent, "step": step})
                seat.missed = 0
                self._move(seat.agent, S.PLAYING)
