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


def head(mn, qn, cn, flag=5, extra=""):
    """A data segment's fields up to CP's opening &&."""
    return f"QN={qn};ST=39;CN={cn};PW=123456;MN={mn};Flag={flag};{extra}CP=&&"


def packets(mn, qn, cn, cp):
    """A message as the gateway sends it: one frame, or split at records
    into packets of at most 1024 bytes (PNUM, PNO, Flag 7)."""
    one = head(mn, qn, cn) + cp + "&&"
    if len(one.encode()) <= 1024:
        return frame(one)
    recs, chunks, cur = cp.split(";"), [], ""
    room = 1024 - len(head(mn, qn, cn, 7, "PNUM=9;PNO=9;").encode()) - 2
    for r in recs:
        cand = cur + ";" + r if cur else r
        if len(cand.encode()) > room:
            chunks.append(cur)
            cur = r
        else:
            cur = cand
    chunks.append(cur)
    n = len(chunks)
    return b"".join(frame(head(mn, qn, cn, 7, f"PNUM={n};PNO={i + 1};") + c + "&&")
                    for i, c in enumerate(chunks))


def signed(key, mn, qn, cn, seq, prev, body, sep=","):
    """A signed record (protocol/UPLINK.md "Signed records") signed by
    OpenSSL with the gateway's key file: (its frames, its Hash)."""
    import hashlib
    import subprocess
    canon = f"Seq={seq},Prev={prev},{body}"
    msg = bytes.fromhex(prev) + canon.encode()
    h = hashlib.sha256(msg).hexdigest().upper()
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=msg,
                         capture_output=True, check=True).stdout
    sig = der_to_raw(der).hex().upper()
    return packets(mn, qn, cn, f"{canon}{sep}Hash={h},Sig={sig}"), h
