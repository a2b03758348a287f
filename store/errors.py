"""The one exception the store raises for bad input, bad files and refused operations."""
from __future__ import annotations


class StoreError(Exception):
    """A store file is missing, unreadable, incompatible or inconsistent, or an operation on it
    was refused.  The message names the file (and field or attribute) concerned."""
