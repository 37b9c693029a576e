"""The pyinfra entry file: ``pyinfra INVENTORY deploy/cluster.py --data phase=<phase>``.

``kubelite cluster up`` runs it once per phase (packages, control-plane, agents) so its progress
and a failure can name the phase; run by hand without ``phase`` it does every phase in order.
``phase=teardown`` removes kubelite from the hosts.
"""

from pyinfra import host

from deploy.agent import install_agent
from deploy.common import prepare_node
from deploy.registry import install_registry
from deploy.server import install_server
from deploy.teardown import remove_kubelite

phase = host.data.get("phase") or "all"

if phase in ("packages", "all"):
    prepare_node()
if phase in ("control-plane", "all") and host.data.role == "master":
    install_server()
    if host.data.get("registry"):
        install_registry()
if phase in ("agents", "all"):
    install_agent()
if phase == "teardown":
    remove_kubelite()
