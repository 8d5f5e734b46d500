"""Every CLI error is one line with exit 2: usage errors, option types and ranges, bad paths (fuzzed in-process)."""

from __future__ import annotations

import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compresskit.cli import main

# commands whose positional argument is a path: a made-up one fails in the library, after parsing
PATH_COMMANDS = {"train": ["--out", "--resume", "--nproc-per-node", "--timeout"],
                 "card": ["--out", "--checkpoint"],
                 "time": ["--threads", "--rounds", "--per-round", "--warmup", "--precision", "--crosscheck", "--json"],
                 "run": ["--out", "--no-bench", "--json", "--nproc-per-node", "--wait"],
                 "bench": ["--threads", "--n", "--split", "--candidates", "--gates", "--json", "--wait"],
                 "gate": ["--gates", "--json"],
                 "compare": ["-o"]}
# commands that would do real work when every argument is valid: each case gets one argument they refuse
WORK_COMMANDS = {"data": ["--size", "--n", "--seed", "--max-objects", "--styles", "--skin-tones", "--eval-fraction",
                          "--val-fraction", "--grid", "--json"],
                 "encode": ["--tokens", "--json"],
                 "generate": ["--model", "--n", "--seed", "-o", "--json"],
                 "eval": ["--model", "--real", "--teacher", "--data", "--n", "--split", "--seed", "--json"],
                 "info": ["--json"], "passes": ["--json"]}
REFUSED = [["--no-such-option"], ["--n", "0"], ["--n", "-1"], ["--n", "abc"], ["--seed", "abc"], ["--size", "1e309"],
           ["--threads", "0"], ["--n", "99999999999999999999999"], ["--model", "/no/such/model"], ["-z"]]
FLAGS = {"--json", "--no-bench", "--wait", "--resume", "--crosscheck", "--real", "--tokens"}
VALUES = st.sampled_from(["", "0", "-1", "1", "abc", "1e309", "nan", "inf", "-0.5", "2,x", "/no/such/path", "emoji",
                          "99999999999999999999999", "ünïcödé", "[bold]x[/]", "a b"])
MADE_UP_PATH = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12).map(lambda t: f"/no/such/{t}")


@st.composite
def command_lines(draw) -> list[str]:
    if draw(st.booleans()):
        command = draw(st.sampled_from(sorted(PATH_COMMANDS)))
        argv = [command, draw(MADE_UP_PATH)]
        options = PATH_COMMANDS[command]
    else:
        command = draw(st.sampled_from(sorted(WORK_COMMANDS)))
        argv = [command] + ([] if command in ("info", "passes", "eval") else [draw(st.sampled_from(["x-caption", "shapes"]))])
        options = WORK_COMMANDS[command]
    for option in draw(st.lists(st.sampled_from(options), max_size=3)):
        argv += [option] if option in FLAGS else [option, draw(VALUES)]
    if command in WORK_COMMANDS:
        argv += draw(st.sampled_from(REFUSED))
    return argv


@pytest.fixture
def keep_signals():
    """main() installs its SIGINT / SIGTERM handlers; put pytest's back afterwards."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=command_lines())
def test_every_bad_command_line_is_one_line_with_exit_2(argv, capsys, tmp_path, monkeypatch, keep_signals):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exited:
        main(argv)
    captured = capsys.readouterr()
    assert exited.value.code in (0, 1, 2), (argv, exited.value.code, captured.err)
    assert "Traceback" not in captured.err, (argv, captured.err)
    if exited.value.code == 2:
        lines = [line for line in captured.err.splitlines() if line.strip() and not line.startswith("note: ")]
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, captured.err)


@pytest.mark.parametrize(("argv", "fragment"), [
    (["generate", "red apple", "--n", "0"], "Invalid value for '--n'"),
    (["genrate"], "No such command 'genrate'"),
    (["run"], "Missing argument"),
    (["bench", "x", "--threads"], "requires an argument"),
    (["run", "recipes/smoke.yaml", "--nproc-per-node", "0"], "'--nproc-per-node'"),
])
def test_usage_errors_named_in_the_issue_are_one_line_exit_2(argv, fragment, capsys, keep_signals):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and fragment in err and "\n" not in err and err.startswith("error: "), err
