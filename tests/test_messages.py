"""Every command a message suggests exists and parses; names and config errors are checked first."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from maskbnn.errors import UserError
from maskbnn.paths import REPO_ROOT
from tests.conftest import plain_env

SOURCES = [
    p
    for folder in ("maskbnn", "pipeline", "bench", "models", "driver/maskbnn_board")
    for p in sorted((REPO_ROOT / folder).rglob("*.py"))
]
# A command in backticks on one source line: `make ...`, `maskbnn ...`, `maskbnn-board ...`.
COMMAND_RE = re.compile(r"`((?:make|maskbnn|maskbnn-board) [^`]+)`")
PLACEHOLDER_RE = re.compile(r"^(?:\{[^}]*\}|[A-Z][A-Z_]*|\.\.\.|<[^>]+>)$")


def _text(node) -> str:
    """A string literal's text, an f-string's placeholders as {x} (implicit concatenation is one)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) if isinstance(v, ast.Constant) else "{x}" for v in node.values)
    return ""


def _messages(tree) -> list[tuple[int, str]]:
    """Strings the user sees: what is raised, printed or logged."""
    out = []
    for node in ast.walk(tree):
        shown = isinstance(node, ast.Raise) or (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", "")) in ("print", "log")
        )
        if shown:
            out += [(n.lineno, _text(n)) for n in ast.walk(node) if _text(n)]
    return out


def suggested_commands() -> list[tuple[str, str]]:
    found = set()
    for path in SOURCES:
        for n, text in _messages(ast.parse(path.read_text())):
            for cmd in COMMAND_RE.findall(text):
                found.add((f"{path.relative_to(REPO_ROOT)}:{n}", cmd))
    return sorted(found)


def make_targets_and_variables() -> tuple[set[str], set[str]]:
    text = (REPO_ROOT / "Makefile").read_text()
    targets = set()
    for m in re.finditer(r"^([A-Za-z][\w. -]*?)\s*:(?!=)", text, re.M):
        targets.update(m.group(1).split())
    variables = set(re.findall(r"^([A-Z_]+)\s*[?:]?=", text, re.M))
    return targets, variables


def _filled(parser, argv: list[str]) -> list[str]:
    """Placeholders (NET, {board}, ...) replaced by a value their option accepts."""
    out = []
    for i, tok in enumerate(argv):
        flag = argv[i - 1] if i else ""
        if PLACEHOLDER_RE.match(tok) and flag.startswith("--"):
            action = _find_action(parser, flag)
            if action is not None and action.choices:
                tok = str(next(iter(action.choices)))
            elif action is not None and action.type in (int, float):
                tok = "1"
            else:
                tok = "x"
        out.append(tok)
    return out


def _find_action(parser, flag: str):
    for action in parser._actions:
        if flag in action.option_strings:
            return action
        for sub in getattr(action, "choices", None) or {}:
            sub_parser = action.choices[sub] if isinstance(action.choices, dict) else None
            if sub_parser is not None:
                found = _find_action(sub_parser, flag)
                if found is not None:
                    return found
    return None


def _parses(prog: str, argv: list[str]) -> str | None:
    """None if argparse accepts the command, else why not."""
    if prog == "maskbnn":
        from maskbnn.cli import COMMANDS, _build_parser

        if not argv or argv[0] not in COMMANDS:
            return f"no subcommand {argv[:1]}"
        parser, _ = _build_parser(argv)
    else:
        from maskbnn_board.cli import build_parser

        parser = build_parser()
    try:
        parser.parse_args(_filled(parser, argv))
    except SystemExit:
        return "argparse refuses it"
    return None


def test_every_suggested_command_exists_and_parses(capsys):
    targets, variables = make_targets_and_variables()
    commands = suggested_commands()
    assert len(commands) > 15  # the scan finds the messages
    bad = []
    for where, cmd in commands:
        words = cmd.split()
        if words[0] == "make":
            for w in words[1:]:
                if "=" in w and w.split("=")[0] not in variables:
                    bad.append(f"{where}: `{cmd}`: Make has no variable {w.split('=')[0]}")
                elif "=" not in w and w not in targets:
                    bad.append(f"{where}: `{cmd}`: Make has no target {w!r}")
        else:
            why = _parses(words[0], words[1:])
            if why:
                bad.append(f"{where}: `{cmd}`: {why}")
    capsys.readouterr()
    assert not bad, "\n".join(bad)


def test_the_scan_catches_a_missing_target_and_a_bad_flag():
    targets, _ = make_targets_and_variables()
    assert "verify" in targets and "no-such-target" not in targets
    assert _parses("maskbnn", ["verify", "--net", "NET", "--board", "{board}"]) is None
    assert _parses("maskbnn", ["verify", "--nett", "x"]) is not None
    assert _parses("maskbnn", ["builds", "--net", "x"]) is not None


def run_cli(argv, capsys) -> tuple[int, str]:
    from maskbnn.cli import main

    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", ["build", "verify", "rtlsim", "deploy", "bitstream"])
def test_an_unknown_network_is_named_before_any_advice(command, capsys):
    code, err = run_cli([command, "--net", "mask_9w9a"], capsys)
    assert code == 2 and "unknown network 'mask_9w9a'" in err and "`" not in err


@pytest.mark.parametrize("command", ["verify", "rtlsim"])
def test_an_unknown_board_is_refused_before_any_advice(command, capsys):
    code, err = run_cli([command, "--net", "mask_1w1a_0.25", "--board", "ZCU104"], capsys)
    assert code == 2 and "invalid choice: 'ZCU104'" in err and "maskbnn build" not in err


def test_make_with_an_unknown_network_says_so():
    r = subprocess.run(["make", "-s", "bitstream", "NET=nonexistent"], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=60, env=plain_env())  # fmt: skip
    assert r.returncode != 0
    assert "unknown network NET=nonexistent" in r.stderr and "make train" not in r.stderr


def _config(tmp_path: Path, text: str) -> Path:
    src = (REPO_ROOT / "build_configs" / "mask_1w1a_0.25.yaml").read_text()
    (tmp_path / "mask_1w1a_0.25.yaml").write_text(text or src)
    return tmp_path


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    from maskbnn.config import load_network_config

    folder = _config(tmp_path, "name: mask_1w1a_0.25\nmodel: {family: cnv\ntrain: [\n")
    with pytest.raises(UserError, match=r"mask_1w1a_0\.25\.yaml, line \d+ column \d+: not valid"):
        load_network_config("mask_1w1a_0.25", folder)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("epochs", "0", r"train\.epochs: input should be greater than or equal to 1, got 0"),
        ("epochs", "ten", r"train\.epochs: input should be a valid integer, got 'ten'"),
        (
            "batch_size",
            "1",
            r"train\.batch_size: input should be greater than or equal to 2, got 1",
        ),
        ("milestones", "[a, 2]", r"train\.milestones\.0: input should be a valid integer, got 'a'"),
    ],
)
def test_config_values_are_checked_with_file_and_key(tmp_path, key, value, message):
    from maskbnn.config import load_network_config

    src = (REPO_ROOT / "build_configs" / "mask_1w1a_0.25.yaml").read_text()
    src = re.sub(rf"^  {key}: .*\n", "", src, flags=re.M)  # YAML keeps the last of duplicates
    assert "\ntrain:\n" in src
    folder = _config(tmp_path, src.replace("\ntrain:\n", f"\ntrain:\n  {key}: {value}\n", 1))
    with pytest.raises(UserError, match=rf"mask_1w1a_0\.25\.yaml: {message}") as err:
        load_network_config("mask_1w1a_0.25", folder)
    assert "--epochs" not in str(err.value)


def test_every_shipped_config_still_loads():
    from maskbnn.config import load_network_config, network_names

    for name in network_names():
        load_network_config(name)
