"""Command ids the bus makes for callers that bring none."""

from typing import Any

import pytest

from app import wire
from app.kit.bus import MAX_COMMAND_ID_LENGTH, CommandBus, CommandBusUnavailable, new_command_id
from app.kit.commands import dispatch
from app.kit.errors import Problem
from app.kit.redis import Keys, create_redis
from tests.support.processes import free_port


def test_generated_command_ids_are_unique_and_sort_by_creation() -> None:
    ids = [new_command_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # each lands at the end of processed_commands' primary key
    assert all(len(i) <= MAX_COMMAND_ID_LENGTH and i.isalnum() for i in ids)


async def test_a_command_the_worker_could_not_process_reaches_the_caller_as_internal() -> None:
    class Answering:
        """Stands for the bus: answers as the worker answers a written-off command."""

        async def send(self, *args: Any, **kwargs: Any) -> wire.Reply:
            return wire.refusal("INTERNAL", "m")

    deposit = wire.Deposit(user_id=1, asset="USDT", amount="1")
    problem = await dispatch(Answering(), deposit, timeout=1)  # type: ignore[arg-type]
    assert problem == Problem("INTERNAL", "m", None)


async def test_a_submit_while_redis_is_unreachable_fails_as_a_typed_timeout() -> None:
    redis = create_redis(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    bus = CommandBus(redis, Keys("unreachable:"))
    try:
        with pytest.raises(CommandBusUnavailable):
            await bus.submit("resume", {"symbol": "BTC-USDT"}, timeout=0.5)
        problem = await dispatch(bus, wire.Resume(symbol="BTC-USDT"), timeout=0.5)
        assert isinstance(problem, Problem) and problem.code == "TIMEOUT"
    finally:
        await bus.close()
        await redis.aclose()
