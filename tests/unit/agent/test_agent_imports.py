"""The agent process must not import what only the server or rare CLI commands use (idle RSS)."""

from __future__ import annotations

import json
import subprocess
import sys

# What `kubelite agent` imports before it runs (kubelite/cli/agent.py), both real runtimes included.
_AGENT_IMPORTS = """
import json, sys
import kubelite.cli
import kubelite.cli.agent
from kubelite.agent.agent import Agent
from kubelite.agent.bootstrap import ensure_node_credentials
from kubelite.agent.httpserver import agent_ssl_context
from kubelite.agent.node import detect_node_ip
import kubelite.agent.runtimes.docker, kubelite.agent.runtimes.runc
print(json.dumps(sorted(sys.modules)))
"""

# Each is megabytes of resident memory for the agent's whole life.
_SERVER_OR_RARE = (
    "kubernetes",  # the official client's models (~18 MB): the API server's validation only
    "kubelite.apiserver.objects",
    "kubelite.auth.bootstrap",  # the join endpoint, server side (the agent reads its token with kubelite.auth.token)
    "rich",  # table printing of get/certs/cluster
)


def test_agent_does_not_import_server_or_printing_modules() -> None:
    out = subprocess.run([sys.executable, "-c", _AGENT_IMPORTS], capture_output=True, text=True, check=True).stdout
    modules = set(json.loads(out))
    assert "kubelite.agent.runtimes.docker" in modules  # the probe imported what it claims
    loaded = sorted(m for m in modules for banned in _SERVER_OR_RARE if m == banned or m.startswith(banned + "."))
    assert loaded == []
