"""The repository's promises: CI runs exactly the README's test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(?P<body>.*?)```", readme.split("## Quickstart", 1)[1], re.S)
    commands = [line for line in block.group("body").splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, "the Quickstart is exactly two commands"
    ci = [
        line
        for line in (ROOT / ".ci/run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    # the one other step: Debian's chromium for the browser test, when missing and apt-get can install it
    system = [line for line in ci if line.startswith("if ! command -v chromium")]
    assert len(system) == 1 and "apt-get install -y -qq chromium" in system[0] and "pytest" not in system[0]
    assert [line for line in ci if line not in system] == [commands[1]]


def test_ruff_lint_is_clean():
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "segkit", "tests", "notebooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout[-3000:]
