"""Names shown in reports and errors: one line each, whatever bytes the file name holds."""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(name: str) -> str:
    """`name` for a one-line report: control characters (C0, DEL, C1) become escapes (`\\n`, `\\x1b`), so a newline
    in a file name cannot forge a line; bytes of a non-UTF-8 name (surrogate escapes) become `\\xNN`."""
    out = []
    for ch in name:
        o = ord(ch)
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif o < 0x20 or 0x7F <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        elif 0xDC80 <= o <= 0xDCFF:  # os.fsdecode's surrogate escape of a non-UTF-8 byte
            out.append(f"\\x{o - 0xDC00:02x}")
        else:
            out.append(ch)
    return "".join(out)
