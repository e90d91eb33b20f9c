"""IoMT intrusion detection and deterioration prediction: generators, features, detectors, alerts.

Pure computation only: gateways (``client/``) and validators (``node/``) call it and do the I/O.
The alert contract and its query (``ids.queries``) run on chain.
"""
