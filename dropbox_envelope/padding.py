"""PADMÉ padding (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and
Communication with PURBs", PETS 2019, §4).

A length L is rounded up so that only the top ``floor(log2(floor(log2 L))) + 1`` bits of it
survive. Overhead is below 12 % (worst case 11.6 %, at L = 129) and an observer learns only
O(log log L) bits of the size.
"""

from __future__ import annotations

__all__ = ["padme"]


def padme(length: int) -> int:
    """Return the PADMÉ-padded size for ``length`` (``length`` itself when it is below 2)."""
    if length < 0:
        raise ValueError("length must be non-negative")
    if length < 2:
        return length
    e = length.bit_length() - 1  # floor(log2 L)
    s = e.bit_length()  # floor(log2 E) + 1
    last_bits = e - s
    mask = (1 << last_bits) - 1
    return (length + mask) & ~mask
