"""The README's quick start, run as written, command by command, against `tradegraph run`.

Its ```sh blocks under "## Quick start" are the test: the first must be `make run` (the
`supervisor` fixture is that, on the test's servers); every later command runs in one bash,
in the project folder, as a newcomer's second terminal would, and must exit 0 with no
GraphQL error in what it prints. The balances it ends with must be exactly what the fees
imply. The API section's trading and admin examples continue the same shell, and are run
after it the same way.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.kit.db import plain_url
from tests.support.processes import ROOT, Supervisor, operator_env

pytestmark = pytest.mark.e2e

MARK = "@@quickstart-command"


def quickstart_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]


def api_examples_section() -> str:
    """The API's examples that continue the quick start's shell: trading and admin."""
    readme = (ROOT / "README.md").read_text()
    return readme.split("\n### Trading (logged in, KYC approved)\n", 1)[1].split("\n### Lists\n")[0]


def fees_section() -> str:
    """The Fees section's example, which continues the same shell after the API's."""
    readme = (ROOT / "README.md").read_text()
    return readme.split("\n## Fees\n", 1)[1].split("\n## ", 1)[0]


def quickstart_blocks(language: str = "sh", section: str | None = None) -> list[str]:
    text = quickstart_section() if section is None else section
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.S | re.M)


def split_commands(block: str) -> list[str]:
    """Whole shell commands (a function, a multi-line quote), asking bash where each ends."""
    commands: list[str] = []
    pending: list[str] = []
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        text = "\n".join(pending)
        if line.endswith("\\"):
            continue
        if subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True).returncode:
            continue  # not a complete command yet
        commands.append(text)
        pending = []
    assert not pending, f"an incomplete command at the end of a block:\n{block}"
    return commands


def graphql_errors(value: Any) -> list[Any]:
    """Every non-empty ``errors`` list anywhere in a JSON answer."""
    found: list[Any] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "errors" and item:
                found.append(item)
            else:
                found.extend(graphql_errors(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(graphql_errors(item))
    return found


def test_the_quickstart_blocks_are_there() -> None:
    blocks = quickstart_blocks()
    assert blocks[0].strip() == "make run"
    commands = [c for block in blocks[1:] for c in split_commands(block)]
    assert any("create-admin" in c for c in commands)
    assert sum("placeOrder" in c for c in commands) == 2
    assert "$cursor" not in "\n".join(commands)
    # Pasted into an interactive zsh, a `#` comment would be arguments.
    assert not [c for c in commands if re.search(r"(^|\s)#", c)]


async def _balances(database_url: str) -> dict[str, dict[str, tuple[Decimal, Decimal]]]:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        rows = await connection.fetch(
            "SELECT CASE u.role WHEN 'system' THEN 'system' ELSE u.username END AS who, "
            "b.asset, b.available, b.locked "
            "FROM balances b JOIN users u ON u.id = b.user_id "
            "WHERE u.username IN ('alice', 'bob') OR u.role = 'system'"
        )
    finally:
        await connection.close()
    balances: dict[str, dict[str, tuple[Decimal, Decimal]]] = {}
    for row in rows:
        balances.setdefault(row["who"], {})[row["asset"]] = (row["available"], row["locked"])
    return balances


def test_the_quickstart_runs_as_written_and_ends_with_the_balances_the_fees_imply(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    commands = [c for block in quickstart_blocks()[1:] for c in split_commands(block)]
    quickstart_count = len(commands)
    examples = quickstart_blocks(section=api_examples_section())
    assert len(examples) == 4  # trading, ticker, admin funds, admin users
    commands += [c for block in examples for c in split_commands(block)]
    (fees,) = quickstart_blocks(section=fees_section())
    commands += split_commands(fees)
    script = ["set -o pipefail"]
    for number, command in enumerate(commands):
        if number == quickstart_count:
            # The quick start is done: the test checks the database before the API's
            # examples, which continue in the same shell, change it.
            script.append(
                'touch "$SYNC/quickstart-done"; while [ ! -e "$SYNC/go" ]; do sleep 0.05; done'
            )
        script += [
            f"printf '\\n{MARK} {number}\\n'",
            "{",
            command,
            "} 2>&1",
            "status=$?; [ $status -eq 0 ] || "
            f"{{ printf '\\n{MARK} failed %s\\n' $status; exit 1; }}",
        ]
    sync = tmp_path
    env = operator_env(supervisor.data_dir, TRADEGRAPH_URL=supervisor.url, SYNC=str(sync))
    assert (ROOT / ".venv" / "bin" / "tradegraph").exists(), "the quick start uses .venv/bin"
    shell = subprocess.Popen(
        ["bash", "-c", "\n".join(script)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (sync / "quickstart-done").exists() and shell.poll() is None:
            assert time.monotonic() < deadline, "the quick start did not finish in 90 s"
            time.sleep(0.05)
        after_quickstart = None
        if shell.poll() is None:
            assert supervisor.settings.database_url
            after_quickstart = asyncio.run(_balances(supervisor.settings.database_url))
        (sync / "go").touch()
        stdout, stderr = shell.communicate(timeout=90)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
    result = subprocess.CompletedProcess(shell.args, shell.returncode, stdout, stderr)
    outputs: dict[int, str] = {}
    for part in result.stdout.split(f"\n{MARK} ")[1:]:
        head, _, output = part.partition("\n")
        if head.startswith("failed"):
            failed = commands[max(outputs)]
            pytest.fail(f"{head}: {failed}\n{outputs[max(outputs)]}\n{result.stderr}")
        outputs[int(head)] = output
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(outputs) == list(range(len(commands)))
    answers: list[Any] = []
    for number, output in outputs.items():
        assert "Traceback" not in output, commands[number]
        for line in output.splitlines():
            if line.startswith("{"):
                answer = json.loads(line)
                assert graphql_errors(answer) == [], f"{commands[number]}\n{line}"
                if number < quickstart_count:
                    answers.append(answer)
    # The examples' own answers: the amended quantity, the self-trade, the resolved event.
    example_output = "\n".join(outputs[n] for n in range(quickstart_count, len(commands)))
    assert '"amendOrder":{"order":{"quantity":"0.05"}' in example_output
    assert '"cancelReason":"SELF_TRADE"' in example_output
    assert '"resolveRiskEvent":{"riskEvent":{"resolved":true}' in example_output
    # The Ticker example: the quick start's trade, by query and by subscription.
    assert '"ticker":{"symbol":"BTC-USDT","lastPrice":"30000","openPrice":"30000"' in (
        example_output
    )
    assert re.search(
        r'"type":"next".*"ticker":\{"symbol":"BTC-USDT","lastPrice":"30000"', (example_output)
    )
    # The Fees example: Bob's pin cleared, the job lowers him to the tier his volume earns.
    assert re.search(r"^user \d+: tier 3 -> 1$", example_output, re.M)
    assert '"me":{"feeTier":1,"feeTierOverride":false,"volume30d":"15000",' in example_output
    assert '"nextTier":{"tier":2,"volumeNeeded":"85000"}' in example_output

    # What the README shows last is what it printed, and what the database holds, and what
    # the fees say.
    (shown_output,) = quickstart_blocks("json")
    assert [json.loads(line) for line in shown_output.splitlines()] == answers[-2:]
    alice, bob = answers[-2]["data"]["balances"], answers[-1]["data"]["balances"]
    shown = {
        "alice": {b["asset"]: (Decimal(b["available"]), Decimal(b["locked"])) for b in alice},
        "bob": {b["asset"]: (Decimal(b["available"]), Decimal(b["locked"])) for b in bob},
    }
    price, quantity = Decimal("30000"), Decimal("0.5")
    maker_fee = price * quantity * Decimal("0.001")  # Alice's, in USDT: 15
    taker_fee = quantity * Decimal("0.0015")  # Bob's, in BTC: 0.00075
    none = Decimal(0)
    expected = {
        "alice": {"BTC": (1 - quantity, none), "USDT": (price * quantity - maker_fee, none)},
        "bob": {"BTC": (quantity - taker_fee, none), "USDT": (20000 - price * quantity, none)},
        "system": {"BTC": (taker_fee, none), "USDT": (maker_fee, none)},
    }
    assert shown == {who: expected[who] for who in ("alice", "bob")}
    assert after_quickstart == expected
    assert expected["alice"]["USDT"] == (Decimal("14985"), none)
    assert expected["bob"]["BTC"] == (Decimal("0.49925"), none)
