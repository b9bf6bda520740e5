"""The README's quick start, run as it is written (bash, curl, `.venv/bin/devcmd`) against a
real `devcmd run` on free ports, with every setting at its default: if the README drifts from
what works, this fails. Each `# {...}` comment in the block is an answer the block prints."""

from __future__ import annotations

import ast
import http.client
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_run import BIN, ROOT, env, home, running  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration
MARKER = "<!-- quickstart -->"


def quickstart() -> str:
    """The shell block right after the README's quick-start marker."""
    readme = (ROOT / "README.md").read_text()
    after = readme[readme.index(MARKER) + len(MARKER) :]
    match = re.match(r"\s*```sh\n(.*?)```", after, re.DOTALL)
    assert match, "the quick start is a ```sh block right after the marker"
    return match.group(1)


def promised(block: str) -> list[dict]:
    """The answers the block's comments show: `# {...}` lines, `...` standing for the rest."""
    shown = []
    for line in block.splitlines():
        text = line.strip()
        if text.startswith("# {"):
            text = re.sub(r",\s*\.\.\.\s*}$", "}", text[2:])
            try:
                shown.append(json.loads(text))
            except json.JSONDecodeError:
                shown.append(ast.literal_eval(text))
    return shown


def printed(output: str) -> list[dict]:
    """Every JSON object (or Python dict) the block printed, in order."""
    found, decoder, at = [], json.JSONDecoder(), 0
    while (at := output.find("{", at)) >= 0:
        try:
            value, end = decoder.raw_decode(output, at)
        except json.JSONDecodeError:
            line_end = output.find("\n", at)
            try:
                value, end = ast.literal_eval(output[at:line_end]), line_end
            except (ValueError, SyntaxError):
                at += 1
                continue
        found.append(value)
        at = end
    return found


def matches(shown: dict, answer: dict) -> bool:
    """Every field shown is in the answer; a shown string with `...` stands for its prefix."""
    for key, value in shown.items():
        if key not in answer:
            return False
        if isinstance(value, str) and "..." in value:
            if not str(answer[key]).startswith(value.split("...")[0]):
                return False
        elif answer[key] != value:
            return False
    return True


def undeclared_form_login(port: int, form: str) -> int:
    """A login as a public PHP OceanConnect client sends it: a form with no Content-Type."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/iocm/app/sec/v1.1.0/login", body=form.encode())
        reply = connection.getresponse()
        assert "accessToken" in json.loads(reply.read())
        return reply.status
    finally:
        connection.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="the quick start uses curl")
def test_the_readme_quick_start_runs_as_written(env, tmp_path: Path) -> None:  # noqa: F811
    block = quickstart()
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    port = int(env["PORT"])
    with running([str(BIN / "devcmd"), "run"], env) as (run, seen):
        run.wait_ready(port)
        seen.extend(run.descendants())
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, (done.stdout, done.stderr, run.output)
        assert undeclared_form_login(port, "appId=demo&secret=demo-secret") == 200
        assert run.interrupt() == 130
    assert re.search(r"^\s*300 201$", done.stdout, re.MULTILINE), done.stdout  # no refusal
    answers = printed(done.stdout)
    for shown in promised(block):
        assert any(matches(shown, answer) for answer in answers), (shown, answers)
