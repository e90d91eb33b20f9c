"""A hospital's side of federated learning: local data, torch training with client-level DP,
the round client, and the in-process simulation that runs the real contract.

This is the only package that imports torch, Opacus and scikit-learn.
"""
