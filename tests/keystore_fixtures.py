"""Keystore fixtures (filled by the keystore work)."""
