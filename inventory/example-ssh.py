"""A hand-written pyinfra inventory for the ssh provider: existing machines, nothing is created.

Use it from a cluster spec (``provider: ssh``, ``inventory: ../../inventory/example-ssh.py``,
``ssh: {key: ~/.ssh/id_ed25519}``) and ``kubelite cluster up SPEC``: kubelite reads the groups
``masters`` and ``workers`` (host, or (host, data) with ``node_name``), writes its own full
inventory into the cluster's state dir and deploys there. The addresses below are documentation
addresses (TEST-NET-1): replace them with your machines.
"""

masters = [
    ("192.0.2.10", {"node_name": "node-a"}),
]

workers = [
    ("192.0.2.11", {"node_name": "node-b"}),
    ("192.0.2.12", {"node_name": "node-c"}),
]
