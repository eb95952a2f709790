"""Where a new method goes: one registry per kind, each a module of this package.

- :mod:`~unetflow.methods.architectures` networks (``models.<name>.architecture``)
- :mod:`~unetflow.methods.losses` training losses (``train.loss``)
- :mod:`~unetflow.methods.segmenters` probabilities to objects (``segment.method``)
- :mod:`~unetflow.methods.metrics` scores of a segmentation (columns of the report)

Adding one is a decorated function or class in that module; nothing else changes.
"""
