"""Store text on root's screen and in root's journal, and a forged check report.

The attacker has the ``ollama`` user's rights (``nobody`` here): it writes
the state directory's reports and names directories in the RAM disk. Root
then runs the command, as an operator at a terminal or a unit into the
journal. No control character the attacker chose may reach that output
unescaped, and no line break may start a line of the attacker's; JSON output
keeps the text exact. The metrics' trust in a report is the third part: a
check's success is what its unit's last run says too (systemd's, which only
root can change); the live unit is tested in Molecule's writeback scenario.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from attack_scene import GID, UID, Host, attacker_shell, root_run
from ollama_ramdisk.runreport import RunReport, confirmed_by_unit
from ollama_ramdisk.systemd_units import UnitResult, parse_result

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks need root and a user")

# Retitle the terminal, clear it, and write a line of the attacker's choosing.
ESCAPES = "\x1b]2;owned\x07\x1b[2J\x1b[H"
FORGED_LINE = "ollama-ramdisk: wrote back 0 models; all is well"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, UID, GID)
    return state


def _forge_report(state_dir: Path, command: str, **fields: object) -> dict:
    report = {
        "command": command, "finished_at": 1.0, "seconds": 1.0, "exit_code": 0,
        "ok": True, "error": None, "counts": {},
    }  # fmt: skip
    report.update(fields)
    path = state_dir / f"last-{command}.json"
    attacker_shell(f"cat > '{path}' <<'EOF'\n{json.dumps(report)}\nEOF")
    return report


def _no_control_characters(text: str) -> None:
    unsafe = [char for char in text if (ord(char) < 0x20 and char != "\n") or ord(char) == 0x7F]
    assert not unsafe, f"control characters reached the output: {unsafe!r}"


def test_a_forged_report_puts_no_escape_sequence_on_an_operators_screen(
    host: Host, state_dir: Path
) -> None:
    _forge_report(state_dir, "verify", exit_code=1, ok=False, error=ESCAPES + "\n" + FORGED_LINE)

    run = root_run("status", "--store", host.dest, "--state-dir", state_dir)

    assert run.code == 0, run.err
    _no_control_characters(run.out + run.err)
    assert "\\x1b]2;owned\\x07\\x1b[2J\\x1b[H" in run.out
    assert not any(line.startswith(FORGED_LINE) for line in run.out.splitlines())


def test_json_output_keeps_the_forged_text_exact(host: Host, state_dir: Path) -> None:
    forged = _forge_report(state_dir, "verify", exit_code=1, ok=False, error=ESCAPES)

    run = root_run("status", "--json", "--store", host.dest, "--state-dir", state_dir)

    assert run.code == 0, run.err
    assert run.json["last_runs"]["verify"]["error"] == forged["error"]


def test_a_report_nested_too_deeply_is_ignored_with_a_warning(host: Host, state_dir: Path) -> None:
    attacker_shell(f"printf '%*s' 60000 '' | tr ' ' '[' > '{state_dir}/last-verify.json'")

    run = root_run("status", "--store", host.dest, "--state-dir", state_dir)

    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    assert "last-verify.json is not a report of a verify run: ignored" in run.err


def _plant(host: Host, where: str, text: str) -> None:
    """``text`` where the attacker may write it: a layer's digest and media type
    in a manifest made in RAM (any API client can have the server write one),
    or a name in the record of written-back models (the owner's file)."""
    if where == "record":
        record = host.source.root / "ollama-ramdisk-written-back.json"
        content = json.dumps({"models": ["m:1", text]})
        attacker_shell(f"cat > '{record}' <<'EOF'\n{content}\nEOF")
        return
    library = host.dest / "manifests" / "registry.ollama.ai" / "library"
    document = json.loads((library / "m" / "1").read_text())
    document["layers"].append({"mediaType": text, "digest": f"sha256:{text}", "size": 5})
    attacker_shell(
        f"mkdir -p '{library}/evil' && cat > '{library}/evil/1' <<'EOF'\n"
        f"{json.dumps(document)}\nEOF"
    )


JOURNAL_CASES = {
    "writeback-manifest": ("manifest", ["writeback"]),
    "writeback-record": ("record", ["writeback"]),
    "refill-record": ("record", ["populate", "m:1"]),
    "status-manifest": ("manifest", ["status"]),
    "verify-manifest": ("manifest", ["verify", "evil:1"]),
}


@pytest.mark.parametrize(("where", "argv"), JOURNAL_CASES.values(), ids=JOURNAL_CASES.keys())
def test_store_text_with_a_line_break_forges_no_line_in_roots_journal(
    host: Host, where: str, argv: list[str]
) -> None:
    _plant(host, where, "x\n" + FORGED_LINE + ESCAPES)
    stores = {
        "writeback": ["--source", host.source.root, "--dest", host.dest],
        "populate": ["--source", host.source.root, "--dest", host.dest],
        "status": ["--store", host.dest, "--source", host.source.root],
        "verify": ["--store", host.dest],
    }[argv[0]]

    run = root_run(argv[0], *stores, *argv[1:])

    output = run.out + run.err
    _no_control_characters(output)
    assert not any(line.startswith(FORGED_LINE) for line in output.splitlines()), output
    # Shown escaped, as repr() or as printable() writes a line break.
    assert f"x\\n{FORGED_LINE}" in output or f"x\\x0a{FORGED_LINE}" in output, output


# ---------------------------------------------------------------- the check's result


SHOWN_FAILED = {
    "LoadState": "loaded",
    "Result": "exit-code",
    "ExecMainStatus": "1",
    "ExecMainExitTimestampMonotonic": "5000000",
}


def test_systemds_word_on_the_last_run_is_read_from_systemctl_show() -> None:
    failed = parse_result("v.service", SHOWN_FAILED, now=1000.0, monotonic=15.0)
    never = parse_result(
        "v.service", {**SHOWN_FAILED, "ExecMainExitTimestampMonotonic": "0"}, 1000.0, 15.0
    )
    missing = parse_result("v.service", {**SHOWN_FAILED, "LoadState": "not-found"}, 1000.0, 15.0)

    assert failed == UnitResult("v.service", False, "exit-code", 1, 990.0)
    assert never is None  # not run since boot: the report alone says
    assert missing is None


def test_a_forged_ok_report_cannot_hide_a_failed_check() -> None:
    unit = UnitResult("v.service", ok=False, result="exit-code", exit_status=1, finished_at=5.0)
    forged = RunReport("verify", 9.0, 1.0, 0, None, {"corrupt_blobs": 0})

    confirmed = confirmed_by_unit({"verify": forged}, "verify", unit)
    removed = confirmed_by_unit({}, "verify", unit)

    assert not confirmed["verify"].ok
    assert confirmed["verify"].error == (
        "v.service ended with exit-code (exit status 1); its report said it succeeded"
    )
    assert not removed["verify"].ok
    assert removed["verify"].finished_at == 5.0


def test_an_honest_failed_report_stands_beside_a_successful_unit() -> None:
    unit = UnitResult("v.service", ok=True, result="success", exit_status=0, finished_at=5.0)
    failed_by_hand = RunReport("verify", 9.0, 1.0, 1, "2 blobs corrupt", {"corrupt_blobs": 2})

    confirmed = confirmed_by_unit({"verify": failed_by_hand}, "verify", unit)

    assert confirmed["verify"] == failed_by_hand
