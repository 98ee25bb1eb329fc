"""How the store encodes what it keeps: canonical compact JSON, xz with a dictionary sized to the data."""

from __future__ import annotations

import lzma
import zlib

from driftctl.jsontext import compact

# what decoding a damaged stored value raises (xz or zlib check, bad UTF-8 or JSON, a missing key or a wrong type)
UNREADABLE = (ValueError, KeyError, TypeError, zlib.error, lzma.LZMAError)

# the dictionary each preset uses (xz(1)): never more than that, less when the data is smaller
_PRESET_DICT = {0: 1 << 18, 1: 1 << 20, 2: 1 << 21, 3: 1 << 22, 4: 1 << 22, 5: 1 << 23, 6: 1 << 23}

def xz(data: bytes, preset: int = 6) -> bytes:
    """``data`` xz-compressed at ``preset``, with a dictionary no larger than the data needs: the
    same bytes out for a store part of a few KB, without preset 6's ~94 MB of compressor memory
    (a 40-host apply's controller peaked 33 MB higher for it)."""
    size = min(_PRESET_DICT[preset], max(1 << 16, 1 << (len(data) - 1).bit_length()))
    return lzma.compress(data, format=lzma.FORMAT_XZ,
                         filters=[{"id": lzma.FILTER_LZMA2, "preset": preset, "dict_size": size}])


dumps = compact(sort_keys=True, default=str)  # compact JSON with sorted keys (equal values, equal text)
