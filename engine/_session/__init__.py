"""A workflow session: load one workflow, run it through the interpreter, write the effects.

Also the operator actions and callbacks applied within a session.
"""
