"""Patients' consent on chain, shaped like HL7 FHIR Consent: the records, the ``consent.*`` contract,
the check the FL contract asks before it takes an update, and the consent queries.

A pure leaf: it imports only ``core/``. Patients appear only as keyed pseudonyms
(HMAC-SHA256 of the medical record number under a secret that never leaves the
hospital, :func:`consent.record.pseudonym`, computed by the hospital's client);
no record number and no health data ever reaches this package's state.
"""
