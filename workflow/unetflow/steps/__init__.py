"""One module per rule: rule ``X`` runs ``python -m unetflow.steps.X`` (``demo_data`` included).

A step is a leaf: it imports library modules of :mod:`unetflow` and third-party
packages, never another step, so each runs in its rule's conda environment alone.
"""
