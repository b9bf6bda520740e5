"""Layering that the imports must keep: the domain (and the metrics it counts into) does not
import Celery or Flask, and `devcmd.metrics` does not import the domain."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import devcmd.domain.auth, devcmd.domain.commands, devcmd.domain.delivery
import devcmd.domain.devices, devcmd.domain.health, devcmd.domain.notifications
import devcmd.domain.revocations, devcmd.domain.southbound, devcmd.metrics
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("celery", "flask"))))
"""


def test_the_domain_imports_neither_celery_nor_flask() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_metrics_do_not_import_the_domain() -> None:
    probe = "import sys, devcmd.metrics; print(sorted(m for m in sys.modules if 'domain' in m))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
