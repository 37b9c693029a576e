"""kubelite's Kubernetes client: REST calls, watches, informers and the controllers' work queue."""

from kubelite.client.informer import Informer, object_key, split_key
from kubelite.client.kubeconfig import ClientConfig, KubeconfigError, load_kubeconfig, write_kubeconfig
from kubelite.client.rest import ApiClient, ApiConnectionError, ApiError, WatchEvent
from kubelite.client.workqueue import ShutDownError, WorkQueue, run_workers

__all__ = [
    "ApiClient",
    "ApiConnectionError",
    "ApiError",
    "ClientConfig",
    "Informer",
    "KubeconfigError",
    "ShutDownError",
    "WatchEvent",
    "WorkQueue",
    "load_kubeconfig",
    "object_key",
    "run_workers",
    "split_key",
    "write_kubeconfig",
]
