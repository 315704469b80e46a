"""Argo Workflows definitions of the daily pipeline (Hera), built from ``reco.pipeline.STEPS``.

``workflows.daily`` builds the objects, ``workflows.render`` writes them as YAML to ``gitops/workflows/``,
``workflows.check`` is the strict structural check of what was rendered; ``python -m workflows`` (or
``reco workflows``) is the command line.
"""
