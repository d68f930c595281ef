"""Fault campaign over the whole mesh (issue: prove the guarantees): `python -m mesh_chaos --help`."""
