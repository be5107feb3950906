"""Engines: local (child processes), slurm, kubernetes, fake. One shape: see base.py."""
