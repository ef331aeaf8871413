"""xent in other projects' CI: the pre-commit hooks and the GitHub Action's script.

These are programs, like :mod:`xentcli.cli` (whose error handling and exit
codes they share): ``python -m xentcli.ci.precommit`` (the hooks of
``.pre-commit-hooks.yaml``) and ``python -m xentcli.ci.github_action`` (the
steps of ``action.yml``). The reports they print are :mod:`xentcli.reports`.
"""
