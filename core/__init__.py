"""PipeSentinel: monitoring and emergency response for pipelines through inhabited areas.

The package root (folder ``core/``) holds what every stage shares: the settings object, the site
model and the command line. The stages are subpackages, in data-flow order: ``hardware`` (device
simulators) -> ``ingest`` -> ``detection`` -> ``plans`` -> ``simulation`` -> ``api``.
"""

__version__ = "0.1.0"
