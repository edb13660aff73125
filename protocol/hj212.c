/* HJ 212-2017 frames: the CRC of Appendix A, a tolerant decoder and a strict,
 * splitting encoder.
 *
 * The decoder takes one frame (a line) and checks it from the outside in:
 * framing, length, CRC, then the bytes of the data segment, then the header
 * fields, then CP. Each check has its own sentence, so a refusal tells the
 * station's engineer exactly what to fix. It copies CP twice into the frame
 * struct: once as sent (for storage and for hashing signed records) and once
 * cut into NUL-terminated keys and values, which the pairs index by offset,
 * so a decoded frame holds no pointers and can be copied freely.
 *
 * The encoder writes straight into the caller's buffer, fills in the length
 * field afterwards, and splits a message whose data segment would exceed
 * 1024 bytes at CP record boundaries, so that joining the packets' CPs with
 * ';' gives back the original CP byte for byte (the signed records of
 * UPLINK.md rely on this). */
#include "protocol/protocol.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

uint16_t hj212_crc(const void *buf, size_t len) {
  const uint8_t *p = buf;
  unsigned crc = 0xFFFF;
  for (size_t i = 0; i < len; i++) {
    crc = (crc >> 8) ^ p[i];
    for (int b = 0; b < 8; b++)
      crc = (crc & 1) ? (crc >> 1) ^ 0xA001 : crc >> 1;
  }
  return (uint16_t)crc;
}

/* ---- small helpers */

/* Writes the reason and returns `rc`. */
static int say(int rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int say(int rc, char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return rc;
}
#define fail(err, errlen, ...) say(-EBADMSG, (err), (errlen), __VA_ARGS__)
#define bad_input(err, errlen, ...) say(-EINVAL, (err), (errlen), __VA_ARGS__)

/* Copies up to `n` bytes of `s` for a message, non-printable bytes as \xNN
 * and with "..." when cut; `out` has room for 64 bytes. */
static const char *shown(const char *s, size_t n, char out[64]) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (o + 8 >= 64) {
      memcpy(out + o, "...", 3);
      o += 3;
      break;
    }
    if (c < 0x20 || c == 0x7F || c == '"' || c == '\\')
      o += (size_t)snprintf(out + o, 64 - o, "\\x%02X", c);
    else
      out[o++] = (char)c;
  }
  out[o] = '\0';
  return out;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(char c) {
  return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
static int hex_val(char c) {
  if (is_digit(c))
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

static bool all_digits(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!is_digit(s[i]))
      return false;
  return n > 0;
}

static bool all_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (hex_val(s[i]) < 0)
      return false;
  return true;
}

/* Length of the valid UTF-8 sequence at `s` (at most `n` bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned min;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    len = 2, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF)
    len = 3, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4)
    len = 4, min = 0x10000;
  else
    return 0;
  if (n < len)
    return 0;
  unsigned cp = c & (0x3F >> (len - 1));
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

/* Offset of the first control byte or invalid UTF-8 sequence, or `n`. */
static size_t bad_byte(const char *s, size_t n, bool *control) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    if (u[i] < 0x20 || u[i] == 0x7F) {
      *control = true;
      return i;
    }
    size_t l = utf8_len(u + i, n - i);
    if (l == 0) {
      *control = false;
      return i;
    }
    i += l;
  }
  return n;
}

/* ---- decoding */

/* The header fields before CP, as a table: name, where, size, number or text. */
typedef struct head_field {
  const char *name;
  size_t off; /* in hj212_head_t */
  size_t max; /* text: characters; number: largest value */
  bool number;
  bool required;
} head_field_t;

/* Reading is tolerant: only CN and MN are required (in that order of
 * complaint); QN, ST, PW and Flag may be missing. */
static const head_field_t head_fields[] = {
    {"QN", offsetof(hj212_head_t, qn), HJ212_QN_MAX, false, false},
    {"CN", offsetof(hj212_head_t, cn), HJ212_CN_MAX, false, true},
    {"ST", offsetof(hj212_head_t, st), HJ212_ST_MAX, false, false},
    {"PW", offsetof(hj212_head_t, pw), HJ212_PW_MAX, false, false},
    {"MN", offsetof(hj212_head_t, mn), HJ212_MN_MAX, false, true},
    {"Flag", offsetof(hj212_head_t, flag), 255, true, false},
    {"PNUM", offsetof(hj212_head_t, pnum), HJ212_PNUM_MAX, true, false},
    {"PNO", offsetof(hj212_head_t, pno), HJ212_PNUM_MAX, true, false},
};
#define N_HEAD (sizeof(head_fields) / sizeof(head_fields[0]))
#define PNUM_IDX 6 /* PNUM, then PNO */

/* Stores one header field "name=value" (`len` bytes at `s`). */
static int head_field(hj212_head_t *h, const char *s, size_t len, unsigned *seen, char *err,
                      size_t errlen) {
  char tmp[64];
  const char *eq = memchr(s, '=', len);
  if (!eq)
    return fail(err, errlen, "field \"%s\" has no '='", shown(s, len, tmp));
  size_t klen = (size_t)(eq - s), vlen = len - klen - 1;
  const char *v = eq + 1;
  for (size_t i = 0; i < N_HEAD; i++) {
    const head_field_t *hf = &head_fields[i];
    if (strlen(hf->name) != klen || memcmp(hf->name, s, klen) != 0)
      continue;
    if (*seen & (1u << i))
      return fail(err, errlen, "%s given twice", hf->name);
    *seen |= 1u << i;
    if (hf->number) {
      if (vlen == 0 || vlen > 4 || !all_digits(v, vlen))
        return fail(err, errlen, "%s \"%s\" is not a number", hf->name, shown(v, vlen, tmp));
      int n = 0;
      for (size_t k = 0; k < vlen; k++)
        n = n * 10 + (v[k] - '0');
      if ((size_t)n > hf->max)
        return fail(err, errlen, "%s %d is over %zu", hf->name, n, hf->max);
      *(int *)(void *)((char *)h + hf->off) = n;
      return 0;
    }
    /* Some 2005-era stations pad an unset ST with NUL bytes (the shared
     * capture has six such frames, CRC intact): read it as absent. */
    size_t nul = 0;
    while (nul < vlen && v[nul] == '\0')
      nul++;
    if (nul == vlen && !hf->required) {
      ((char *)h + hf->off)[0] = '\0';
      return 0;
    }
    if (vlen == 0)
      return fail(err, errlen, "%s is empty", hf->name);
    if (vlen > hf->max)
      return fail(err, errlen, "%s \"%s\" is over %zu characters", hf->name, shown(v, vlen, tmp),
                  hf->max);
    for (size_t k = 0; k < vlen; k++) {
      bool ok =
          i == 0 ? is_digit(v[k]) : (is_alnum(v[k]) || v[k] == '-' || v[k] == '_' || v[k] == '.');
      if (!ok)
        return fail(err, errlen, "%s \"%s\" has a bad character", hf->name, shown(v, vlen, tmp));
    }
    char *dst = (char *)h + hf->off;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
    return 0;
  }
  return fail(err, errlen, "unknown field \"%s\" before CP", shown(s, klen, tmp));
}

/* Cuts CP (already copied to f->cp) into records and pairs. */
static int parse_cp(hj212_frame_t *f, char *err, size_t errlen) {
  char tmp[64];
  size_t o = 0; /* next free byte in kv */
  size_t rec = 0;
  const char *p = f->cp, *end = f->cp + f->cp_len;
  while (p < end) {
    const char *rend = memchr(p, ';', (size_t)(end - p));
    if (!rend)
      rend = end;
    bool any = false;
    for (const char *q = p; q < rend;) {
      const char *pend = memchr(q, ',', (size_t)(rend - q));
      if (!pend)
        pend = rend;
      size_t plen = (size_t)(pend - q);
      if (plen > 0) {
        const char *eq = memchr(q, '=', plen);
        if (!eq)
          return fail(err, errlen, "CP record %zu: \"%s\" has no '='", rec + 1,
                      shown(q, plen, tmp));
        if (eq == q)
          return fail(err, errlen, "CP record %zu: \"%s\" has no name", rec + 1,
                      shown(q, plen, tmp));
        /* A pair of L bytes takes L + 1 in kv ("k=v" becomes "k\0v\0")
         * and is followed by a separator or the end of CP, so kv never needs
         * more than cp_len + 1 bytes; a pair and its separator take at least
         * 3 bytes, so there are fewer than HJ212_PAIR_MAX of them. */
        hj212_pair_t *pr = &f->pair[f->n_pairs++];
        size_t klen = (size_t)(eq - q), vlen = plen - klen - 1;
        pr->key = (uint16_t)o;
        memcpy(f->kv + o, q, klen);
        o += klen;
        f->kv[o++] = '\0';
        pr->value = (uint16_t)o;
        memcpy(f->kv + o, eq + 1, vlen);
        o += vlen;
        f->kv[o++] = '\0';
        pr->record = (uint16_t)rec;
        any = true;
      }
      q = pend + (pend < rend);
    }
    if (any)
      rec++;
    p = rend + (rend < end);
  }
  f->n_records = rec;
  return 0;
}

int hj212_decode(const char *buf, size_t len, hj212_frame_t *f, char *err, size_t errlen) {
  char tmp[64];
  memset(&f->h, 0, sizeof(f->h));
  f->h.flag = -1;
  f->n_pairs = f->n_records = f->cp_len = f->data_len = 0;
  f->cp[0] = '\0';
  if (err && errlen)
    err[0] = '\0';

  if (len >= 2 && buf[len - 2] == '\r' && buf[len - 1] == '\n')
    len -= 2;
  else if (len >= 1 && buf[len - 1] == '\n')
    len -= 1;
  if (len < 10)
    return fail(err, errlen, "too short (%zu bytes)", len);
  if (buf[0] != '#' || buf[1] != '#')
    return fail(err, errlen, "does not start with ##");
  if (!all_digits(buf + 2, 4))
    return fail(err, errlen, "length field \"%s\" is not 4 digits", shown(buf + 2, 4, tmp));
  size_t declared =
      (size_t)((buf[2] - '0') * 1000 + (buf[3] - '0') * 100 + (buf[4] - '0') * 10 + (buf[5] - '0'));
  const char *data = buf + 6;
  size_t dlen = len - 10;
  if (declared != dlen)
    return fail(err, errlen, "length %zu but data segment has %zu bytes", declared, dlen);
  if (dlen > HJ212_DATA_MAX)
    return fail(err, errlen, "data segment over %d bytes (%zu)", HJ212_DATA_MAX, dlen);
  const char *crcf = buf + len - 4;
  if (!all_hex(crcf, 4))
    return fail(err, errlen, "CRC field \"%s\" is not 4 hex digits", shown(crcf, 4, tmp));
  unsigned got = (unsigned)(hex_val(crcf[0]) << 12 | hex_val(crcf[1]) << 8 | hex_val(crcf[2]) << 4 |
                            hex_val(crcf[3]));
  unsigned want = hj212_crc(data, dlen);
  if (got != want)
    return fail(err, errlen, "CRC %.4s expected %04X", crcf, want);
  f->crc = (uint16_t)got;
  f->data_len = dlen;

  /* Header fields up to "CP=", which runs to the end of the segment. */
  unsigned seen = 0;
  const char *p = data, *end = data + dlen;
  const char *cp = NULL;
  while (p < end) {
    if (end - p >= 3 && memcmp(p, "CP=", 3) == 0) {
      cp = p + 3;
      break;
    }
    const char *semi = memchr(p, ';', (size_t)(end - p));
    size_t flen = semi ? (size_t)(semi - p) : (size_t)(end - p);
    if (flen > 0) {
      int rc = head_field(&f->h, p, flen, &seen, err, errlen);
      if (rc != 0)
        return rc;
    }
    p += flen + (semi != NULL);
  }
  for (size_t i = 0; i < N_HEAD; i++)
    if (head_fields[i].required && !(seen & (1u << i)))
      return fail(err, errlen, "missing %s", head_fields[i].name);
  if (!cp)
    return fail(err, errlen, "missing CP");
  size_t cplen = (size_t)(end - cp);
  if (cplen < 2 || cp[0] != '&' || cp[1] != '&')
    return fail(err, errlen, "CP does not start with &&");
  if (cplen < 4 || cp[cplen - 1] != '&' || cp[cplen - 2] != '&')
    return fail(err, errlen, "CP not closed by &&");

  hj212_head_t *h = &f->h;
  bool pnum = seen & (1u << PNUM_IDX), pno = seen & (1u << (PNUM_IDX + 1));
  if (pnum != pno)
    return fail(err, errlen, "%s without %s", pnum ? "PNUM" : "PNO", pnum ? "PNO" : "PNUM");
  if (pnum && (h->pnum < 1 || h->pno < 1 || h->pno > h->pnum))
    return fail(err, errlen, "PNO %d out of 1-%d", h->pno, h->pnum);
  if (h->flag >= 0 && (h->flag & HJ212_FLAG_SPLIT) && !pnum)
    return fail(err, errlen, "Flag %d marks a split packet but PNUM and PNO are missing", h->flag);

  f->cp_len = cplen - 4;
  bool control = false;
  size_t bad = bad_byte(cp + 2, f->cp_len, &control);
  if (bad < f->cp_len) {
    if (control)
      return fail(err, errlen, "control byte 0x%02X in CP at offset %zu",
                  (unsigned char)cp[2 + bad], bad);
    return fail(err, errlen, "invalid UTF-8 in CP at offset %zu", bad);
  }
  memcpy(f->cp, cp + 2, f->cp_len);
  f->cp[f->cp_len] = '\0';
  return parse_cp(f, err, errlen);
}

const char *hj212_get(const hj212_frame_t *f, int record, const char *key) {
  for (size_t i = 0; i < f->n_pairs; i++)
    if ((record < 0 || f->pair[i].record == record) && strcmp(hj212_key(f, i), key) == 0)
      return hj212_value(f, i);
  return NULL;
}

/* ---- encoding */

static bool text_ok(const char *s, size_t min, size_t max, bool mn_chars) {
  size_t n = strnlen(s, max + 1);
  if (n < min || n > max)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!(is_alnum(s[i]) || (mn_chars && (s[i] == '-' || s[i] == '_' || s[i] == '.'))))
      return false;
  return true;
}

static int check_head(const hj212_head_t *h, char *err, size_t errlen) {
  char tmp[64];
  if (strnlen(h->qn, HJ212_QN_LEN + 1) != HJ212_QN_LEN || !all_digits(h->qn, HJ212_QN_LEN))
    return bad_input(err, errlen, "QN \"%s\" is not YYYYMMDDhhmmssSSS",
                     shown(h->qn, strnlen(h->qn, HJ212_QN_MAX), tmp));
  if (!text_ok(h->st, 1, HJ212_ST_MAX, false))
    return bad_input(err, errlen, "ST must be 1-%d letters or digits", HJ212_ST_MAX);
  if (!text_ok(h->cn, 1, HJ212_CN_MAX, false))
    return bad_input(err, errlen, "CN must be 1-%d letters or digits", HJ212_CN_MAX);
  if (!text_ok(h->pw, 1, HJ212_PW_MAX, false))
    return bad_input(err, errlen, "PW must be 1-%d letters or digits", HJ212_PW_MAX);
  if (!text_ok(h->mn, 1, HJ212_MN_MAX, true))
    return bad_input(err, errlen, "MN must be 1-%d of A-Z a-z 0-9 . _ -", HJ212_MN_MAX);
  if (h->flag < 0 || h->flag > 255 || (h->flag >> 2) != 1 || (h->flag & HJ212_FLAG_SPLIT))
    return bad_input(err, errlen,
                     "Flag %d: want version 1 (4) plus 1 for an acknowledgement; the encoder "
                     "sets the split bit",
                     h->flag);
  if (h->pnum != 0 || h->pno != 0)
    return bad_input(err, errlen, "PNUM/PNO are set by the encoder; leave them 0");
  return 0;
}

static bool key_char(char c) { return is_alnum(c) || c == '-' || c == '_'; }

/* Checks CP pair by pair and counts its records. */
static int check_cp(const char *cp, size_t len, size_t *nrec, char *err, size_t errlen) {
  char tmp[64];
  bool control = false;
  size_t bad = bad_byte(cp, len, &control);
  if (bad < len)
    return bad_input(err, errlen, "CP has %s at offset %zu",
                     control ? "a control byte" : "invalid UTF-8", bad);
  *nrec = 0;
  if (len == 0)
    return 0;
  size_t rec = 1, start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && cp[i] != ';' && cp[i] != ',')
      continue;
    const char *pair = cp + start;
    size_t plen = i - start;
    const char *eq = memchr(pair, '=', plen);
    if (!eq || eq == pair)
      return bad_input(err, errlen, "CP record %zu: \"%s\" is not key=value", rec,
                       shown(pair, plen, tmp));
    for (const char *k = pair; k < eq; k++)
      if (!key_char(*k))
        return bad_input(err, errlen, "CP record %zu: key \"%s\" has a bad character", rec,
                         shown(pair, (size_t)(eq - pair), tmp));
    for (const char *v = eq + 1; v < pair + plen; v++)
      if (*v == '=' || *v == '&')
        return bad_input(err, errlen, "CP record %zu: value of \"%s\" has '%c' (escape it)", rec,
                         shown(pair, (size_t)(eq - pair), tmp), *v);
    if (i < len && cp[i] == ';')
      rec++;
    start = i + 1;
  }
  *nrec = rec;
  return 0;
}

/* Writes one frame for header `h` (pnum 0: not split) and CP bytes
 * [cp, cp+len) at `out`. Returns its length or -ENOSPC. */
static int put_frame(const hj212_head_t *h, int pnum, int pno, const char *cp, size_t len,
                     char *out, size_t cap) {
  if (cap < 6)
    return -ENOSPC;
  char *data = out + 6;
  size_t room = cap - 6;
  int n;
  if (pnum)
    n = snprintf(data, room, "QN=%s;ST=%s;CN=%s;PW=%s;MN=%s;Flag=%d;PNUM=%d;PNO=%d;CP=&&", h->qn,
                 h->st, h->cn, h->pw, h->mn, h->flag | HJ212_FLAG_SPLIT, pnum, pno);
  else
    n = snprintf(data, room, "QN=%s;ST=%s;CN=%s;PW=%s;MN=%s;Flag=%d;CP=&&", h->qn, h->st, h->cn,
                 h->pw, h->mn, h->flag);
  if (n < 0 || (size_t)n + len + 2 + 6 > room)
    return -ENOSPC;
  size_t d = (size_t)n;
  memcpy(data + d, cp, len);
  d += len;
  memcpy(data + d, "&&", 2);
  d += 2;
  char head[8];
  snprintf(head, sizeof(head), "##%04zu", d);
  memcpy(out, head, 6);
  static const char hex[] = "0123456789ABCDEF";
  unsigned crc = hj212_crc(data, d);
  for (int i = 0; i < 4; i++)
    data[d + (size_t)i] = hex[(crc >> (12 - 4 * i)) & 15];
  memcpy(data + d + 4, "\r\n", 2);
  return (int)(6 + d + 6);
}

/* Bytes of a data segment for this header with an empty CP. */
static size_t head_len(const hj212_head_t *h, int pnum) {
  char tmp[HJ212_FRAME_MAX + 1];
  int n = put_frame(h, pnum, pnum, "", 0, tmp, sizeof(tmp));
  return (size_t)n - 12;
}

int hj212_encode(const hj212_head_t *h, const char *cp, size_t cp_len, char *buf, size_t cap,
                 size_t *nframes, char *err, size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  *nframes = 0;
  int rc = check_head(h, err, errlen);
  if (rc != 0)
    return rc;
  size_t nrec;
  if ((rc = check_cp(cp, cp_len, &nrec, err, errlen)) != 0)
    return rc;

  size_t out = 0;
  if (head_len(h, 0) + cp_len <= HJ212_DATA_MAX) {
    int n = put_frame(h, 0, 0, cp, cp_len, buf, cap);
    if (n < 0)
      return n;
    if ((size_t)n < cap)
      buf[n] = '\0';
    *nframes = 1;
    return n;
  }

  /* Split: the room per packet depends on how many digits PNUM has, so try
   * 1 to 4 digits and keep the first packing whose count fits them. PNO is
   * counted with PNUM's digits, which is never less than it needs. */
  for (int d = 1; d <= 4; d++) {
    int big = d == 1 ? 9 : d == 2 ? 99 : d == 3 ? 999 : HJ212_PNUM_MAX;
    size_t room = HJ212_DATA_MAX - head_len(h, big);
    size_t packets = 0;
    for (size_t start = 0; start < cp_len;) {
      size_t take = 0; /* bytes of whole records that fit */
      for (size_t i = start; i <= cp_len; i++) {
        if (i == cp_len || cp[i] == ';') {
          if (i - start > room)
            break;
          take = i - start;
          if (i == cp_len)
            break;
        }
      }
      if (take == 0) {
        size_t rend = start;
        while (rend < cp_len && cp[rend] != ';')
          rend++;
        return say(-EMSGSIZE, err, errlen,
                   "a CP record of %zu bytes does not fit the %zu left in a packet", rend - start,
                   room);
      }
      packets++;
      start += take + 1;
    }
    if (packets > (size_t)big)
      continue;
    /* Second pass: write them. */
    size_t pno = 0;
    for (size_t start = 0; start < cp_len;) {
      size_t take = 0;
      for (size_t i = start; i <= cp_len; i++) {
        if (i == cp_len || cp[i] == ';') {
          if (i - start > room)
            break;
          take = i - start;
          if (i == cp_len)
            break;
        }
      }
      int n = put_frame(h, (int)packets, (int)++pno, cp + start, take, buf + out, cap - out);
      if (n < 0)
        return n;
      out += (size_t)n;
      start += take + 1;
    }
    if (out < cap)
      buf[out] = '\0';
    *nframes = packets;
    return (int)out;
  }
  return say(-EMSGSIZE, err, errlen, "message needs more than %d packets", HJ212_PNUM_MAX);
}

void hj212_qn_format(int64_t ms, int utc_offset_min, char out[HJ212_QN_LEN + 1]) {
  int64_t local_ms = ms + (int64_t)utc_offset_min * 60000;
  time_t secs = (time_t)(local_ms >= 0 ? local_ms / 1000 : (local_ms - 999) / 1000);
  int milli = (int)(local_ms - (int64_t)secs * 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char tmp[80];
  snprintf(tmp, sizeof(tmp), "%04d%02d%02d%02d%02d%02d%03d", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
  memcpy(out, tmp, HJ212_QN_LEN);
  out[HJ212_QN_LEN] = '\0';
}

int64_t hj212_datatime(const char *s, int utc_offset_min) {
  size_t n = strlen(s);
  if (n != 14 && n != 17)
    return -1;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return -1;
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  int v[6];
  static const int at[] = {0, 4, 6, 8, 10, 12}, len[] = {4, 2, 2, 2, 2, 2};
  for (int i = 0; i < 6; i++) {
    v[i] = 0;
    for (int k = 0; k < len[i]; k++)
      v[i] = v[i] * 10 + (s[at[i] + k] - '0');
  }
  if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
    return -1;
  tm.tm_year = v[0] - 1900;
  tm.tm_mon = v[1] - 1;
  tm.tm_mday = v[2];
  tm.tm_hour = v[3];
  tm.tm_min = v[4];
  tm.tm_sec = v[5];
  return (int64_t)timegm(&tm) - (int64_t)utc_offset_min * 60;
}

int hj212_escape(const char *in, char *out, size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
    bool esc = *p < 0x20 || *p == 0x7F || strchr("%;,=&", *p) != NULL;
    size_t need = esc ? 3 : 1;
    if (o + need + 1 > cap)
      return -ENOSPC;
    if (esc) {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    } else {
      out[o++] = (char)*p;
    }
  }
  if (o + 1 > cap)
    return -ENOSPC;
  out[o] = '\0';
  return (int)o;
}

int hj212_unescape(char *s) {
  size_t o = 0;
  for (size_t i = 0; s[i]; i++) {
    if (s[i] != '%') {
      s[o++] = s[i];
      continue;
    }
    int hi = s[i + 1] ? hex_val(s[i + 1]) : -1;
    int lo = hi >= 0 && s[i + 2] ? hex_val(s[i + 2]) : -1;
    if (hi < 0 || lo < 0)
      return -EINVAL;
    s[o++] = (char)(hi << 4 | lo);
    i += 2;
  }
  s[o] = '\0';
  return (int)o;
}

/* ---- the CNs we know */

static const struct {
  const char *cn;
  const char *name;
  bool is_signed;
} cn_table[] = {
    {"1012", "set time", false},
    {"1013", "time calibration request", false},
    {"2011", "real-time data", false},
    {"2031", "daily data", false},
    {"2051", "minute data", false},
    {"2061", "hourly data", false},
    {"2081", "restart", false},
    {"9011", "request answer", false},
    {"9012", "execution result", false},
    {"9014", "data acknowledgement", false},
    {"6011", "waste ticket", true},
    {"6012", "material delivery", true},
    {"6021", "alarm", true},
    {"6031", "daily energy and carbon", true},
    {"6041", "hourly seal", true},
    {"6051", "machinery register change", true},
    {"6052", "machinery entry or exit", true},
    {"6053", "daily machinery figures", true},
    {"6081", "ledger history request", false},
};

const char *hj212_cn_name(const char *cn) {
  for (size_t i = 0; i < sizeof(cn_table) / sizeof(cn_table[0]); i++)
    if (strcmp(cn_table[i].cn, cn) == 0)
      return cn_table[i].name;
  return NULL;
}

bool hj212_cn_is_signed(const char *cn) {
  for (size_t i = 0; i < sizeof(cn_table) / sizeof(cn_table[0]); i++)
    if (strcmp(cn_table[i].cn, cn) == 0)
      return cn_table[i].is_signed;
  return false;
}

static void unhex(const char *s, size_t n, uint8_t *out) {
  for (size_t i = 0; i < n; i++)
    out[i] = (uint8_t)(hex_val(s[2 * i]) << 4 | hex_val(s[2 * i + 1]));
}

void hj212_hex(const uint8_t *b, size_t n, char *out) {
  static const char digits[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[b[i] >> 4];
    out[2 * i + 1] = digits[b[i] & 15];
  }
  out[2 * n] = '\0';
}

int hj212_signed_parse(const char *cp, size_t len, hj212_signed_t *out, char *err, size_t errlen) {
  /* The tail: <sep>Hash=<64>,Sig=<128> */
  static const size_t tail = 1 + 5 + 64 + 1 + 4 + 128;
  static const size_t seq_pre = 4; /* "Seq=" */
  if (len < tail || cp[len - tail] == '\0')
    return fail(err, errlen, "signed record too short for Hash and Sig");
  const char *t = cp + len - tail;
  if ((t[0] != ',' && t[0] != ';') || memcmp(t + 1, "Hash=", 5) != 0)
    return fail(err, errlen, "signed record does not end with Hash=<64 hex>,Sig=<128 hex>");
  if (!all_hex(t + 6, 64))
    return fail(err, errlen, "Hash is not 64 hex digits");
  if (memcmp(t + 70, ",Sig=", 5) != 0)
    return fail(err, errlen, "Sig does not follow Hash");
  if (!all_hex(t + 75, 128))
    return fail(err, errlen, "Sig is not 128 hex digits");
  if (len - tail < seq_pre || memcmp(cp, "Seq=", 4) != 0)
    return fail(err, errlen, "signed record does not start with Seq=");
  size_t i = seq_pre;
  uint64_t seq = 0;
  while (i < len - tail && is_digit(cp[i]) && i < seq_pre + 19)
    seq = seq * 10 + (uint64_t)(cp[i++] - '0');
  if (i == seq_pre || seq == 0)
    return fail(err, errlen, "Seq is not a number from 1");
  if (len - tail < i + 6 + 64 || memcmp(cp + i, ",Prev=", 6) != 0)
    return fail(err, errlen, "Prev=<64 hex> does not follow Seq");
  if (!all_hex(cp + i + 6, 64))
    return fail(err, errlen, "Prev is not 64 hex digits");
  out->seq = seq;
  unhex(cp + i + 6, 32, out->prev);
  unhex(t + 6, 32, out->hash);
  unhex(t + 75, 64, out->sig);
  out->canon_len = len - tail;
  return 0;
}
