"""The explorer's pacer across threads: the page's actions run on the kernel's event loop
(here a real asyncio loop in a thread of its own), and a page's message is done once its
action has run there."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from holiwidget.explorer.pacing import HOLD_S, Pacer


@pytest.fixture
def pacer() -> Iterator[Pacer]:
    """A pacer attached to an event loop that runs in another thread (the kernel's)."""
    loop = asyncio.new_event_loop()
    pacer = Pacer(lambda view, whole: None, lambda view: None, interactive=True)
    attached = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(lambda: (pacer.attach(), attached.set()))
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert attached.wait(5)
    yield pacer
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_a_page_action_runs_on_the_loop_and_is_done_when_it_has_run(pacer: Pacer) -> None:
    ran_on: list[int] = []

    def action(value: int) -> None:
        time.sleep(0.05)
        ran_on.append(threading.get_ident())

    assert pacer.elsewhere()
    pacer.run(action, 1)
    assert len(ran_on) == 1 and ran_on[0] != threading.get_ident()


def test_only_the_newest_of_a_burst_runs_and_every_caller_is_released(pacer: Pacer) -> None:
    gate, ran = threading.Event(), []
    pacer.on_loop(gate.wait, 5)  # the loop is busy until the gate opens
    events = [pacer.on_loop(ran.append, value, latest="denoise") for value in (1, 2, 3)]
    gate.set()
    assert all(event.wait(5) for event in events)
    assert ran == [3]


def test_a_page_message_waits_for_a_stuck_loop_only_so_long(pacer: Pacer) -> None:
    gate, ran = threading.Event(), []
    pacer.on_loop(gate.wait, 5)
    t = time.monotonic()
    pacer.run(ran.append, 1)
    waited = time.monotonic() - t
    gate.set()
    assert HOLD_S <= waited < HOLD_S + 1 and ran == []
    pacer.run(ran.append, 2)  # the loop is free again: the first one ran before it
    assert ran == [1, 2]


def test_without_another_thread_the_action_runs_at_once() -> None:
    pacer = Pacer(lambda view, whole: None, lambda view: None, interactive=False)
    ran: list[int] = []
    assert not pacer.elsewhere()
    pacer.run(ran.append, 1, latest="denoise")
    assert ran == [1]
