"""The ``fbci`` command line: argument parsing, the commands, and the one rule for errors.

It is the only package that prints for a person. Each command is a thin
layer over ``node/`` (run a validator), ``client/`` (talk to one),
``genesis/`` (set a consortium up) or ``devnet/`` (try it on one machine).
"""
