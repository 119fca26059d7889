"""Scheduling: who runs a due workflow and when (polling the store, the worker process).

The resumers that hand work over live in the public ``engine.resumers``.
"""
