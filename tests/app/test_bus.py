"""Command ids the bus makes for callers that bring none."""

from app.kit.bus import MAX_COMMAND_ID_LENGTH, new_command_id


def test_generated_command_ids_are_unique_and_sort_by_creation() -> None:
    ids = [new_command_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # each lands at the end of processed_commands' primary key
    assert all(len(i) <= MAX_COMMAND_ID_LENGTH and i.isalnum() for i in ids)
