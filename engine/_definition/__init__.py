"""Workflow definitions: statements, handlers, the Workflow base, compiling and read tracing.

Knows nothing of sessions, stores, notebooks or graphs.
"""
