"""API object model: the served types, validation, defaulting, selectors and patches."""
