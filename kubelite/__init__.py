"""kubelite: a small, real Kubernetes in Python."""

__version__ = "0.1.0"
# The Kubernetes API level kubelite speaks (reported by /version and Node nodeInfo).
KUBE_VERSION = "v1.31.0"
