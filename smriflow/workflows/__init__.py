"""Hand-written ``init_*_wf`` factories, for the few sub-graphs whose shape needs logic a YAML cannot express.

Most workflows are YAML files (``workflows/*.yml`` at the top of the repository); their factories are
``smriflow.init_<name>_wf`` (see :func:`smriflow.engine.builder.packaged_factory`). A YAML file names a
factory of this package under ``workflow:`` by its dotted path.
"""
