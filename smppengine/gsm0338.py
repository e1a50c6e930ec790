"""The GSM 03.38 (3GPP TS 23.038 §6.2.1) 7-bit default alphabet and its extension table.

Pure data. Codes are septet values as they travel unpacked in SMPP (one septet per octet).

* ``BASIC`` — the default alphabet: a 128-character string, index = septet. Position 0x1B is the
  escape to the extension table and holds a placeholder (never encoded, never decoded as such).
* ``EXTENSION`` — septet that follows ESC (0x1B) → character.

The Unicode mapping follows the Unicode Consortium's GSM0338.TXT: 0x09 is 'Ç' (capital; lower-case
'ç' has no code), ESC 0x0A is FORM FEED (U+000C, the standard's "page break"), ESC 0x65 is '€'.
ESC 0x0D (CR2) and ESC 0x1B (SS2) are control codes with no character; see ``smppengine.text.decode``.
"""

from __future__ import annotations

ESC = 0x1B

BASIC: str = (
    # 0x00-0x0F
    "@£$¥èéùìòÇ\nØø\rÅå"
    # 0x10-0x1F (0x1B = ESC placeholder)
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    # 0x20-0x2F
    " !\"#¤%&'()*+,-./"
    # 0x30-0x3F
    "0123456789:;<=>?"
    # 0x40-0x4F
    "¡ABCDEFGHIJKLMNO"
    # 0x50-0x5F
    "PQRSTUVWXYZÄÖÑÜ§"
    # 0x60-0x6F
    "¿abcdefghijklmno"
    # 0x70-0x7F
    "pqrstuvwxyzäöñüà"
)

EXTENSION: dict[int, str] = {
    0x0A: "\x0c",  # FORM FEED (page break)
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

assert len(BASIC) == 128

# character → encoded bytes (1 octet for the basic table, 2 for ESC + extension code)
ENCODE_MAP: dict[int, bytes] = {ord(ch): bytes((code,)) for code, ch in enumerate(BASIC) if code != ESC}
ENCODE_MAP.update({ord(ch): bytes((ESC, code)) for code, ch in EXTENSION.items()})

#: characters that cost two septets
EXTENSION_CHARS: frozenset[str] = frozenset(EXTENSION.values())
#: every character that can be written in GSM 7-bit
ALL_CHARS: frozenset[str] = frozenset(chr(c) for c in ENCODE_MAP)
