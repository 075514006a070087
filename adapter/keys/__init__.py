"""Client keys: keystore readers, the key ring and key generation."""

from adapter.keys._entry import KeyEntry
from adapter.keys.keyring import KeyRing, KeyState, SigningKey, default_kid
from adapter.keys.keystore import read_keystore, select_entry
from adapter.keys.loader import load_key_ring

__all__ = [
    "KeyEntry",
    "KeyRing",
    "KeyState",
    "SigningKey",
    "default_kid",
    "load_key_ring",
    "read_keystore",
    "select_entry",
]
