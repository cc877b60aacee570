"""`mailstack template render` as a user runs it (MISSION.md contract)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MAILSTACK = str(Path(sys.executable).parent / "mailstack")


def run(template: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAILSTACK, "template", "render", *args], input=template, capture_output=True, text=True, check=False
    )


def test_renders_stdin_to_stdout_exactly() -> None:
    variables = {"name": "Ana", "items": [{"t": "A"}, {"t": "B"}], "vip": True}
    template = (
        "Hi {{var:name}}!\n{% for i in var:items %}- {{ i.t }}\n{% endfor %}{% if var:vip %}VIP{% endif %}"
    )
    done = run(template, "--vars", json.dumps(variables))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hi Ana!\n- A\n- B\nVIP"
    assert done.stderr == ""


def test_data_option_and_html_escaping() -> None:
    template = "<b>{{ data:firstname }}</b> {{ var:note }}"
    plain = run(template, "--vars", '{"note": "<i>"}', "--data", '{"firstname": "Bo & Co"}')
    assert plain.returncode == 0 and plain.stdout == "<b>Bo & Co</b> <i>"
    escaped = run(template, "--vars", '{"note": "<i>"}', "--data", '{"firstname": "Bo & Co"}', "--html")
    assert escaped.returncode == 0 and escaped.stdout == "<b>Bo &amp; Co</b> &lt;i&gt;"


def test_utf8_round_trips() -> None:
    done = run("Olá {{var:n}} ✓\n", "--vars", '{"n": "José"}')
    assert done.returncode == 0 and done.stdout == "Olá José ✓\n"


def test_unencodable_json_strings_do_not_crash_the_output() -> None:
    done = run("[{{var:x}}]", "--vars", '{"x": "a\\ud800b"}')
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[a?b]"


def test_vars_can_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "vars.json"
    path.write_text('{"day": "Tuesday"}', encoding="utf-8")
    done = run("{{var:day}}", "--vars", f"@{path}")
    assert done.returncode == 0 and done.stdout == "Tuesday"


def test_template_error_exits_non_zero_with_the_error_on_stderr() -> None:
    done = run("Hello {{var:day}}", "--vars", "{}")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "expression parsing error ## Unknown identifier: var:day ## near ## {{var:day ##" in done.stderr
    assert "line 1, column 9" in done.stderr


def test_sandbox_escape_attempt_is_an_error() -> None:
    done = run("{{ ''.__class__.__mro__ }}", "--vars", "{}")
    assert done.returncode == 1 and "Unknown identifier" in done.stderr


def test_invalid_json_is_a_clear_error() -> None:
    done = run("x", "--vars", "{not json")
    assert done.returncode == 2
    assert "--vars is not valid JSON" in done.stderr
    not_object = run("x", "--vars", "[1, 2]")
    assert not_object.returncode == 2 and "--vars must be a JSON object" in not_object.stderr
    bad_data = run("x", "--vars", "{}", "--data", "nope")
    assert bad_data.returncode == 2 and "--data is not valid JSON" in bad_data.stderr


def test_missing_vars_file_is_a_clear_error(tmp_path: Path) -> None:
    done = run("x", "--vars", f"@{tmp_path / 'absent.json'}")
    assert done.returncode == 2 and "cannot read" in done.stderr
