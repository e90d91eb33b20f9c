"""IoMT intrusion detection and deterioration prediction: generators, features, detectors, alerts.

Pure computation only: gateways and validators call it, ``node/`` does the I/O.
"""
