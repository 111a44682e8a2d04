"""Studies: a YAML spec → a list of resolved run configs → an executor that trains each as an
``optbench train`` process and reads its result from the run store.

``spec`` reads and checks specs (and the built-ins in ``specs/``), ``space`` draws search points,
``plan`` expands a spec into runs, ``protocol`` selects each cell's point (Shallue et al. 2018),
``runner`` runs the phases, ``record`` holds what a study writes beside its runs (and the role
each run played), ``local`` is the process-pool executor, ``status`` reads a study's
directory back, ``commands`` holds the ``optbench study`` subcommands.
"""
