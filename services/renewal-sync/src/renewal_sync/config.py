"""Old name of `settings`, kept only while entrypoints/http.py still imports it from here."""

from renewal_sync.settings import RenewalSettings

__all__ = ["RenewalSettings"]
