"""Readable text of what an ESC/POS printer received (demo output, test assertions).

Commands are dropped; text is decoded in the printer's encoding; a QR code
shows as [QR: content], a barcode as [BARCODE: content], an image as [IMAGE],
a cut as a dashed "cut" line. Unknown ESC/GS sequences drop their command
byte only, so text is never lost.
"""

from __future__ import annotations

__all__ = ["escpos_to_text"]

_CODECS = {"GB18030": "gb18030", "BIG5": "big5", "UTF-8": "utf-8", "ASCII": "ascii"}
# Commands with a fixed number of parameter bytes after ESC x / GS x.
_ESC_PARAMS = {0x40: 0, 0x32: 0, 0x61: 1, 0x45: 1, 0x21: 1, 0x2D: 1, 0x64: 1, 0x74: 1, 0x4D: 1,
               0x47: 1, 0x33: 1, 0x4A: 1, 0x52: 1, 0x7B: 1, 0x56: 1, 0x63: 2, 0x70: 3, 0x20: 1}
_GS_PARAMS = {0x21: 1, 0x68: 1, 0x77: 1, 0x66: 1, 0x48: 1, 0x62: 1, 0x42: 1, 0x4C: 2, 0x57: 2,
              0x61: 1, 0x72: 1, 0x49: 1}
_FS_PARAMS = {0x26: 0, 0x2E: 0, 0x21: 1, 0x43: 1, 0x57: 1, 0x2D: 1}
CUT_LINE = "-------- cut --------"


def _code128_text(content: bytes) -> str:
    """What a Code 128 barcode's GS k data carries: `{A`/`{B`/`{C` choose the code set, a byte of
    set C is two digits, `{{` is a '{', other `{x` are function codes (shown as nothing)."""
    out: list[str] = []
    code_set, i = "B", 0
    while i < len(content):
        b = content[i]
        if b == 0x7B and i + 1 < len(content):
            nxt = content[i + 1]
            if nxt in b"ABC":
                code_set = chr(nxt)
            elif nxt == 0x7B:
                out.append("{")
            i += 2
        else:
            out.append(f"{b:02d}" if code_set == "C" else chr(b))
            i += 1
    return "".join(out)


def escpos_to_text(data: bytes, encoding: str = "GB18030") -> str:
    codec = _CODECS.get(encoding.upper(), encoding)
    out: list[str] = []
    text = bytearray()
    qr_data = b""

    def flush() -> None:
        if text:
            out.append(bytes(text).decode(codec, errors="replace"))
            text.clear()

    def marker(s: str) -> None:
        flush()
        if out and not out[-1].endswith("\n"):
            out.append("\n")
        out.append(s + "\n")

    i, n = 0, len(data)
    while i < n:
        b = data[i]
        nxt = data[i + 1] if i + 1 < n else -1
        if b == 0x1B:  # ESC
            i += 2 + _ESC_PARAMS.get(nxt, 0)
        elif b == 0x1C:  # FS
            i += 2 + _FS_PARAMS.get(nxt, 0)
        elif b == 0x10 and nxt == 0x04:  # DLE EOT n: status query
            i += 3
        elif b == 0x1D:  # GS
            if nxt == 0x28 and i + 4 < n:  # GS ( k pL pH cn fn ...
                length = data[i + 3] + data[i + 4] * 256
                body = data[i + 5:i + 5 + length]
                if data[i + 2] == 0x6B and len(body) >= 3 and body[0] == 0x31:
                    if body[1] == 0x50:      # store QR data
                        qr_data = body[3:]
                    elif body[1] == 0x51:    # print stored QR
                        marker(f"[QR: {qr_data.decode('utf-8', errors='replace')}]")
                i += 5 + length
            elif nxt == 0x6B and i + 2 < n:  # GS k m ...: barcode
                m = data[i + 2]
                if m >= 65:
                    length = data[i + 3] if i + 3 < n else 0
                    content = data[i + 4:i + 4 + length]
                    i += 4 + length
                else:
                    end = data.find(b"\x00", i + 3)
                    end = n if end < 0 else end
                    content = data[i + 3:end]
                    i = end + 1
                shown = _code128_text(content) if m == 73 else content.decode("ascii", errors="replace")
                marker(f"[BARCODE: {shown}]")
            elif nxt == 0x56:  # GS V m [n]: cut
                m = data[i + 2] if i + 2 < n else 0
                i += 4 if m in (65, 66, 97, 98, 103, 104) else 3
                marker(CUT_LINE)
            elif nxt == 0x76 and i + 7 < n:  # GS v 0 m xL xH yL yH: raster image
                x = data[i + 4] + data[i + 5] * 256
                y = data[i + 6] + data[i + 7] * 256
                i += 8 + x * y
                marker("[IMAGE]")
            else:
                i += 2 + _GS_PARAMS.get(nxt, 0)
        elif b in (0x0A, 0x0D) or b >= 0x20 or b == 0x09:
            if b != 0x0D:
                text.append(b)
            i += 1
        else:
            i += 1  # other control bytes
    flush()
    return "".join(out)
