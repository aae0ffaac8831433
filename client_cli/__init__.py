"""``dropbox-client``: the offline staff command line for Safe Report Drop Box.

Key generation, fingerprints, and sealing/opening envelopes. Every cryptographic operation goes
through :mod:`dropbox_envelope`; this package only does files, prompts and output.
"""

from __future__ import annotations

__all__: list[str] = []
