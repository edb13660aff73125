"""HJ 212-2017 framing for the receiver's tests (protocol/UPLINK.md): the
tests that write frames by hand import it (PYTHONPATH=$HERE)."""


def crc(b):
    """The frame's CRC-16 (HJ 212-2017 appendix: poly 0xA001, init 0xFFFF)."""
    c = 0xFFFF
    for x in b:
        c = (c >> 8) ^ x
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return c


def frame(d):
    """##, the data segment's length, the segment (str or bytes), its CRC, CR LF."""
    if isinstance(d, str):
        d = d.encode()
    return b"##%04d" % len(d) + d + b"%04X\r\n" % crc(d)


def der_to_raw(der):
    """An ECDSA P-256 signature from OpenSSL's DER to r || s, 32 bytes each."""
    assert der[0] == 0x30
    i, out = 2, b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return out
