"""The ActiveCampaign Bridge Dynamics 365 solution: source layout, packer and checker.

`python -m solution pack` builds the importable zips from `solution/src/` (unpacked
SolutionPackager layout) and `webresources/`; `python -m solution check` validates them the
way an import would. See solution/README.md.
"""
