"""Controllers: one module each, sharing the informer -> workqueue -> reconcile machinery in base.py."""
