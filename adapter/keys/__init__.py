"""Client keys: keystore readers, the key ring and key generation.

The public names are re-exported from :mod:`adapter`; this package has no API of its own.
"""
