/* The compressed block codec (issue 15): one series' closed span of raw
 * readings as one byte string, for the block layout's table. Pure code:
 * no SQLite, no allocation, no state.
 *
 * A reading costs the row layout about 20 bytes (schema.c); time-series
 * engines store one in 1.3-1.4 (Gorilla, VLDB 2015). This codec works in
 * whole bytes rather than Gorilla's bits, which is simpler to check and
 * still gives about 3 bytes a reading for a sensor sending once a second:
 *
 *   byte 0     version (high nibble, 1 or 2) and value mode (low nibble)
 *   varint     n, 1..STOR_BLOCK_MAX
 *   zigzag     t0, Unix ms (>= 0)
 *   zigzag     t1 - t0 (n >= 2; > 0)
 *   zigzag     n - 2 delta-of-deltas: (t[i] - t[i-1]) - (t[i-1] - t[i-2]),
 *              each giving a delta > 0 (times strictly ascend: a block
 *              holds a reading once). Version 2: a delta-of-delta 0 is
 *              followed by a varint r, and stands for r + 1 of them, the
 *              whole run (the next one, if any, is not 0): a series sent
 *              at a steady pace costs a byte or two a block for its times
 *   values     STOR_BLOCK_SCALED: zigzag v0 in hundredths, then n - 1
 *              zigzag deltas of hundredths (the row layout's rule: a value
 *              is stored as hundredths when that round-trips exactly);
 *              STOR_BLOCK_XOR: v0's 8 IEEE 754 bytes big-endian, then for
 *              each next value the XOR x with the previous one: a control
 *              byte 0 when x is 0, else (leading zero bytes << 4 |
 *              significant bytes m), then those m bytes, big-endian, the
 *              first and the last of them not zero.
 *              STOR_BLOCK_DEC (version 2 only): for values that are
 *              hundredths up to a few units in the last place, as a
 *              device's or simulator's decimal arithmetic leaves them
 *              (44.9 computed as 449 * 0.1 is 44.900000000000006, one
 *              unit above the double nearest 44.9). Value v splits into
 *              q = llround(v * 100) and c = bits(v) - bits(q / 100.0), the
 *              difference of the IEEE 754 bit patterns as 64-bit integers.
 *              varint g >= 1, the greatest common divisor of the q deltas
 *              (1 when they are all 0), zigzag q0, n - 1 zigzag deltas of
 *              q divided by g (one-decimal values: tenths), then a byte 0
 *              when every c is 0, else 1, ceil(n / 4) bytes of 2-bit
 *              codes (value i at bits 2 * (i % 4) of byte i / 4, unused
 *              bits 0): 0 for c 0, 1 for +1, 2 for -1, 3 for another c,
 *              which follows, after the codes, as a zigzag in value order.
 *
 * Varints are LEB128 (7 bits a byte, least significant first) of at most
 * 64 bits, zigzag maps signed to unsigned (0, -1, 1, -2 ... to 0, 1, 2,
 * 3 ...). Every block has exactly one encoding in a given mode: the
 * decoder refuses overlong varints, non-canonical XOR bytes and trailing
 * bytes, so a decoded block re-encodes to the same bytes (the fuzz harness
 * checks this), and a damaged one is refused, never misread. */
#include "storage/storage_int.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#define BLOCK_VERSION 2

static uint64_t zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static int64_t unzigzag(uint64_t u) { return (int64_t)(u >> 1) ^ -(int64_t)(u & 1); }

typedef struct out {
  uint8_t *p;
  size_t len, cap;
  bool full;
} out_t;

static void put_byte(out_t *o, uint8_t b) {
  if (o->len < o->cap)
    o->p[o->len] = b;
  else
    o->full = true;
  o->len++;
}

static void put_varint(out_t *o, uint64_t u) {
  while (u >= 0x80) {
    put_byte(o, (uint8_t)(u | 0x80));
    u >>= 7;
  }
  put_byte(o, (uint8_t)u);
}

typedef struct in {
  const uint8_t *p;
  size_t len, at;
} in_t;

static int get_byte(in_t *in, uint8_t *b) {
  if (in->at >= in->len)
    return -EBADMSG;
  *b = in->p[in->at++];
  return 0;
}

/* Canonical LEB128 of at most 64 bits: no byte after the last non-zero
 * group, and a tenth byte of at most 1. */
static int get_varint(in_t *in, uint64_t *u) {
  if (in->at < in->len && !(in->p[in->at] & 0x80)) { /* one byte: most of them */
    *u = in->p[in->at++];
    return 0;
  }
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    uint8_t b;
    if (get_byte(in, &b) != 0)
      return -EBADMSG;
    if (shift == 63 && b > 1)
      return -EBADMSG;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (b == 0 && shift > 0)
        return -EBADMSG; /* overlong */
      *u = v;
      return 0;
    }
  }
  return -EBADMSG;
}

static int get_zigzag(in_t *in, int64_t *v) {
  uint64_t u;
  if (get_varint(in, &u) != 0)
    return -EBADMSG;
  *v = unzigzag(u);
  return 0;
}

static uint64_t dbl_bits(double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof(u));
  return u;
}

static double bits_dbl(uint64_t u) {
  double v;
  memcpy(&v, &u, sizeof(v));
  return v;
}

/* Hundredths within 2^53, where every integer is a double. */
#define HUNDREDTHS_MAX (INT64_C(1) << 53)

/* llround(x) for |x| <= 2^53, exactly, without the library call: the
 * conversion truncates, and a double's fraction x - trunc(x) is exact, so
 * comparing it with one half rounds halves away from zero as llround does. */
static inline int64_t round_half_away(double x) {
  int64_t t = (int64_t)x;
  double f = x - (double)t;
  return t + (f >= 0.5) - (f <= -0.5);
}

static inline bool in_hundredths(double v) {
  return isfinite(v) && fabs(v) * 100.0 <= (double)HUNDREDTHS_MAX;
}

static inline bool hundredths(double v, int64_t *h) {
  if (!in_hundredths(v) || (v == 0 && signbit(v)))
    return false; /* -0 would come back as 0 */
  int64_t x = round_half_away(v * 100.0);
  if ((double)x / 100.0 != v)
    return false;
  *h = x;
  return true;
}

bool stor__block_hundredths(double v, int64_t *h) { return hundredths(v, h); }

/* The split of a value for STOR_BLOCK_DEC: false when v has none (not
 * finite, or too large for hundredths within 2^53). c is 0 exactly when v
 * is its hundredths (STOR_BLOCK_SCALED's rule): the bit patterns differ
 * for -0, which is no hundredths, and agree for every value that is. */
static inline bool dec_split(double v, int64_t *q, int64_t *c) {
  if (!in_hundredths(v))
    return false;
  *q = round_half_away(v * 100.0);
  *c = (int64_t)(dbl_bits(v) - dbl_bits((double)*q / 100.0)); /* two's complement */
  return true;
}

static uint64_t gcd(uint64_t a, uint64_t b) {
  while (b) {
    uint64_t r = a % b;
    a = b;
    b = r;
  }
  return a;
}

static uint64_t abs64(int64_t v) { return v < 0 ? -(uint64_t)v : (uint64_t)v; }

static size_t varint_len(uint64_t u) { return 1 + (size_t)(63 - __builtin_clzll(u | 1)) / 7; }

/* Division by g >= 1 of numbers it divides, and the test whether it
 * divides one, without a division instruction a value (Hacker's Delight
 * 10-16, 10-17): g = m * 2^k with m odd; a multiple of 2^k divided by 2^k
 * is a multiple of m exactly when its product with m's inverse modulo
 * 2^64 is at most (2^64 - 1) / m, and that product is then the quotient. */
typedef struct divisor {
  uint64_t g, inv, lim;
  int k;
} divisor_t;

static void divisor_set(divisor_t *d, uint64_t g) {
  d->g = g;
  d->k = __builtin_ctzll(g);
  uint64_t m = g >> d->k, x = m; /* m * m = 1 mod 8: 3 bits, doubled each step */
  for (int i = 0; i < 5; i++)
    x *= 2 - m * x;
  d->inv = x;
  d->lim = UINT64_MAX / m;
}

static bool divides(const divisor_t *d, uint64_t a) {
  return (a & ((UINT64_C(1) << d->k) - 1)) == 0 && (a >> d->k) * d->inv <= d->lim;
}

/* v / g for a v that g divides (two's complement throughout). */
static int64_t div_exact(const divisor_t *d, int64_t v) {
  return (int64_t)((uint64_t)(v >> d->k) * d->inv);
}

/* A value's hundredths when it has a split (in_hundredths): dec_split's q
 * without c, which costs a division. */
static inline int64_t dec_q(double v) { return round_half_away(v * 100.0); }

static uint8_t code_of(int64_t c) { return c == 0 ? 0 : c == 1 ? 1 : c == -1 ? 2 : 3; }

/* STOR_BLOCK_DEC's values once their divisor g and their 2-bit codes (NULL:
 * every c is 0) are known; `esc`: a c beyond +-1, for which the values are
 * split again. */
static void dec_body(out_t *o, const stor_sample_t *s, size_t n, uint64_t g, const uint8_t *codes,
                     bool esc) {
  divisor_t d;
  divisor_set(&d, g);
  put_varint(o, g);
  int64_t q, c = 0, prev = 0;
  for (size_t i = 0; i < n; i++) {
    q = dec_q(s[i].v);
    put_varint(o, zigzag(i == 0 ? q : div_exact(&d, q - prev)));
    prev = q;
  }
  put_byte(o, codes != NULL);
  if (!codes)
    return;
  for (size_t i = 0; i < (n + 3) / 4; i++)
    put_byte(o, codes[i]);
  for (size_t i = 0; esc && i < n; i++) {
    dec_split(s[i].v, &q, &c);
    if (c < -1 || c > 1)
      put_varint(o, zigzag(c));
  }
}

static bool put_dec(out_t *o, const stor_sample_t *s, size_t n) {
  uint8_t codes[(STOR_BLOCK_MAX + 3) / 4];
  int64_t q, c, prev = 0;
  uint64_t g = 0;
  bool any = false, esc = false;
  memset(codes, 0, (n + 3) / 4);
  for (size_t i = 0; i < n; i++) {
    if (!dec_split(s[i].v, &q, &c))
      return false;
    if (i > 0)
      g = gcd(g, abs64(q - prev)); /* both within 2^53 */
    any |= c != 0;
    esc |= c < -1 || c > 1;
    codes[i / 4] |= (uint8_t)(code_of(c) << (2 * (i % 4)));
    prev = q;
  }
  dec_body(o, s, n, g == 0 ? 1 : g, any ? codes : NULL, esc);
  return true;
}

/* What stor__block_encode needs to pick a mode: the bytes the values take
 * in each (0: the mode cannot hold them), from one pass over them and, when
 * their hundredths share a divisor g > 1, a second over the hundredths; and
 * STOR_BLOCK_DEC's 2-bit codes, in codes[(n + 3) / 4]. */
typedef struct plan {
  size_t scaled, dec, xor;
  uint64_t g;    /* STOR_BLOCK_DEC's divisor */
  bool any, esc; /* STOR_BLOCK_DEC: a c not 0; a c beyond +-1 */
} plan_t;

static bool plan_values(const stor_sample_t *s, size_t n, plan_t *pl, uint8_t *codes) {
  uint64_t prev_bits = 0;
  int64_t prev_q = 0, q0 = 0;
  size_t xor = 8, deltas = 0, esc = 0;
  bool dec = true, any = false;
  divisor_t d = {0};
  memset(codes, 0, (n + 3) / 4);
  for (size_t i = 0; i < n; i++) {
    double v = s[i].v;
    if (!isfinite(v))
      return false; /* no mode holds it */
    uint64_t bits = dbl_bits(v), x = bits ^ prev_bits;
    if (i > 0)
      xor += x == 0 ? 1 : 9 - (size_t)(__builtin_clzll(x) / 8) - (size_t)(__builtin_ctzll(x) / 8);
    prev_bits = bits;
    int64_t q = 0, c = 0;
    if (!dec || !dec_split(v, &q, &c)) {
      dec = false;
      continue;
    }
    if (i == 0) {
      q0 = q;
      deltas += varint_len(zigzag(q));
    } else {
      int64_t dq = q - prev_q; /* both within 2^53 */
      uint64_t a = abs64(dq);
      deltas += varint_len(zigzag(dq));
      if (a != 0 && d.g != 1 && (d.g == 0 || !divides(&d, a)))
        divisor_set(&d, gcd(d.g, a));
    }
    prev_q = q;
    if (c != 0) {
      any = true;
      codes[i / 4] |= (uint8_t)(code_of(c) << (2 * (i % 4)));
      if (c < -1 || c > 1)
        esc += varint_len(zigzag(c));
    }
  }
  *pl = (plan_t){.xor = xor, .any = any, .esc = esc > 0, .g = d.g == 0 ? 1 : d.g};
  if (!dec)
    return true;
  pl->scaled = any ? 0 : deltas; /* every value its hundredths */
  if (pl->g > 1) {               /* the deltas divided by g */
    deltas = varint_len(zigzag(q0));
    prev_q = q0;
    for (size_t i = 1; i < n; i++) {
      int64_t q = dec_q(s[i].v);
      deltas += varint_len(zigzag(div_exact(&d, q - prev_q)));
      prev_q = q;
    }
  }
  pl->dec = varint_len(pl->g) + deltas + 1 + (any ? (n + 3) / 4 + esc : 0);
  return true;
}

/* The values of one mode; false when a value cannot be written in it. */
static bool put_values(out_t *o, const stor_sample_t *s, size_t n, int mode) {
  if (mode == STOR_BLOCK_DEC)
    return put_dec(o, s, n);
  if ((mode & 0xf) == (STOR_BLOCK_SCALED & 0xf)) {
    int64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
      int64_t h;
      if (!stor__block_hundredths(s[i].v, &h))
        return false;
      put_varint(o, zigzag(h - prev)); /* both within 2^53: no overflow */
      prev = h;
    }
    return true;
  }
  uint64_t prev = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(s[i].v))
      return false;
    uint64_t bits = dbl_bits(s[i].v);
    if (i == 0) {
      for (int k = 7; k >= 0; k--)
        put_byte(o, (uint8_t)(bits >> (8 * k)));
    } else {
      uint64_t x = bits ^ prev;
      if (x == 0) {
        put_byte(o, 0);
      } else {
        int lead = __builtin_clzll(x) / 8, trail = __builtin_ctzll(x) / 8;
        int m = 8 - lead - trail;
        put_byte(o, (uint8_t)(lead << 4 | m));
        for (int k = m - 1; k >= 0; k--)
          put_byte(o, (uint8_t)(x >> (8 * (trail + k))));
      }
    }
    prev = bits;
  }
  return true;
}

static bool mode_known(int mode) {
  return mode == STOR_BLOCK_SCALED || mode == STOR_BLOCK_XOR || mode == STOR_BLOCK_SCALED2 ||
         mode == STOR_BLOCK_XOR2 || mode == STOR_BLOCK_DEC;
}

/* Writes (or, past o->cap, counts) a block's mode byte, n and times: 0, or
 * -EINVAL when the samples break the contract. */
static int put_head(const stor_sample_t *s, size_t n, int mode, out_t *o) {
  if (!s || n == 0 || n > STOR_BLOCK_MAX || !mode_known(mode) || s[0].t_ms < 0)
    return -EINVAL;
  bool runs = mode >> 4 >= 2;
  put_byte(o, (uint8_t)mode);
  put_varint(o, n);
  put_varint(o, zigzag(s[0].t_ms));
  int64_t prev_d = 0;
  for (size_t i = 1; i < n; i++) {
    if (s[i].t_ms <= s[i - 1].t_ms)
      return -EINVAL;
    int64_t d = s[i].t_ms - s[i - 1].t_ms; /* both >= 0: no overflow */
    int64_t dod = i == 1 ? d : d - prev_d;
    put_varint(o, zigzag(dod));
    prev_d = d;
    if (runs && i > 1 && dod == 0) {
      uint64_t r = 0;
      while (i + 1 < n && s[i + 1].t_ms > s[i].t_ms && s[i + 1].t_ms - s[i].t_ms == d) {
        r++;
        i++;
      }
      put_varint(o, r);
    }
  }
  return 0;
}

/* Writes (or counts) one block: 0, or -EINVAL when the samples break the
 * contract or a value cannot be written in `mode`. */
static int encode(const stor_sample_t *s, size_t n, int mode, out_t *o) {
  int rc = put_head(s, n, mode, o);
  if (rc != 0)
    return rc;
  return put_values(o, s, n, mode) ? 0 : -EINVAL;
}

size_t stor__block_size(const stor_sample_t *s, size_t n, int mode) {
  out_t o = {0};
  return encode(s, n, mode, &o) == 0 ? o.len : 0;
}

ssize_t stor__block_encode_mode(const stor_sample_t *s, size_t n, int mode, uint8_t *buf,
                                size_t cap) {
  out_t o = {.p = buf, .cap = buf ? cap : 0};
  int rc = encode(s, n, mode, &o);
  if (rc != 0)
    return rc;
  return o.full ? -ENOSPC : (ssize_t)o.len;
}

/* The times are the same bytes in every version 2 mode: they are written
 * once, the values' sizes in each mode are worked out (plan_values), and
 * the values are written in the smallest, the first of SCALED2, DEC and
 * XOR2 on a tie: the bytes stor__block_encode_mode gives in the mode whose
 * stor__block_size is least. */
ssize_t stor__block_encode(const stor_sample_t *s, size_t n, uint8_t *buf, size_t cap) {
  out_t o = {.p = buf, .cap = buf ? cap : 0};
  plan_t pl;
  uint8_t codes[(STOR_BLOCK_MAX + 3) / 4];
  if (put_head(s, n, STOR_BLOCK_SCALED2, &o) != 0 || !plan_values(s, n, &pl, codes))
    return -EINVAL;
  int mode = STOR_BLOCK_XOR2;
  size_t best = pl.xor ;
  if (pl.dec > 0 && pl.dec <= best) {
    mode = STOR_BLOCK_DEC;
    best = pl.dec;
  }
  if (pl.scaled > 0 && pl.scaled <= best)
    mode = STOR_BLOCK_SCALED2;
  if (o.cap > 0)
    o.p[0] = (uint8_t)mode;
  if (mode == STOR_BLOCK_DEC) {
    dec_body(&o, s, n, pl.g, pl.any ? codes : NULL, pl.esc);
  } else if (mode == STOR_BLOCK_SCALED2) { /* every value its hundredths: no check */
    int64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
      int64_t h = dec_q(s[i].v);
      put_varint(&o, zigzag(h - prev));
      prev = h;
    }
  } else {
    put_values(&o, s, n, mode);
  }
  return o.full ? -ENOSPC : (ssize_t)o.len;
}

/* The times of a block, one by one from its t0 (storage_int.h,
 * stor_blk_walk_t). */
typedef stor_blk_walk_t times_t;

static inline int time_next(times_t *tm, in_t *in, int64_t *t) {
  int64_t v;
  size_t i = tm->i++;
  if (i == 0) {
    if (get_zigzag(in, &tm->t) != 0 || tm->t < 0)
      return -EBADMSG;
    *t = tm->t;
    return 0;
  }
  if (tm->run > 0) {
    tm->run--; /* d stays */
  } else {
    if (get_zigzag(in, &v) != 0)
      return -EBADMSG;
    if (i == 1)
      tm->d = v;
    else if (__builtin_add_overflow(tm->d, v, &tm->d))
      return -EBADMSG;
    if (tm->runs && i > 1 && v == 0) {
      /* The whole run: not past the block, and not followed by a 0. */
      if (get_varint(in, &tm->run) != 0 || tm->run > tm->count - 1 - i)
        return -EBADMSG;
      if (i + tm->run + 1 < tm->count && in->at < in->len && in->p[in->at] == 0)
        return -EBADMSG;
    }
  }
  if (tm->d <= 0 || __builtin_add_overflow(tm->t, tm->d, &tm->t))
    return -EBADMSG;
  *t = tm->t;
  return 0;
}

int stor__block_walk(stor_blk_walk_t *w, const uint8_t *buf, size_t len) {
  in_t in = {.p = buf, .len = buf ? len : 0};
  uint8_t head;
  uint64_t count;
  if (get_byte(&in, &head) != 0 || !mode_known(head) || get_varint(&in, &count) != 0 ||
      count == 0 || count > STOR_BLOCK_MAX)
    return -EBADMSG;
  *w = (stor_blk_walk_t){
      .p = buf, .len = in.len, .at = in.at, .count = count, .runs = head >> 4 >= 2};
  return 0;
}

int stor__block_walk_to(stor_blk_walk_t *w, int64_t t_ms) {
  /* The last time read is the first at or after the last time asked for:
   * a later question may be answered by it, an earlier one starts over. */
  if (w->i > 0 && t_ms < w->probe && stor__block_walk(w, w->p, w->len) != 0)
    return -EBADMSG;
  w->probe = t_ms;
  if (w->i > 0 && w->t >= t_ms)
    return w->t == t_ms;
  in_t in = {.p = w->p, .len = w->len, .at = w->at};
  int rc = 0;
  while (w->i < w->count) {
    int64_t t;
    if (time_next(w, &in, &t) != 0) {
      rc = -EBADMSG;
      break;
    }
    if (t >= t_ms) {
      rc = t == t_ms;
      break;
    }
  }
  w->at = in.at;
  return rc;
}

static int get_dec(in_t *in, stor_sample_t *out, size_t count) {
  uint64_t g, kg, common = 0;
  int64_t q = 0, v;
  uint8_t any;
  if (get_varint(in, &g) != 0 || g == 0 || g > (uint64_t)2 * HUNDREDTHS_MAX)
    return -EBADMSG;
  /* q goes into t_ms for now; the values are made once c is known. */
  for (size_t i = 0; i < count; i++) {
    if (get_zigzag(in, &v) != 0)
      return -EBADMSG;
    if (i > 0) {
      if (common != 1) /* once 1, it stays 1 */
        common = gcd(common, abs64(v));
      if (__builtin_mul_overflow(v, (int64_t)g, &v))
        return -EBADMSG;
    }
    if (__builtin_add_overflow(q, v, &q) || q > HUNDREDTHS_MAX || q < -HUNDREDTHS_MAX)
      return -EBADMSG;
    memcpy(&out[i].v, &q, sizeof(q)); /* parked: the value's slot holds q */
  }
  kg = common == 0 ? 1 : g;
  if ((common != 0 && common != 1) || kg != g)
    return -EBADMSG; /* g is not the deltas' greatest common divisor */
  if (get_byte(in, &any) != 0 || any > 1)
    return -EBADMSG;
  size_t codes_at = in->at, ncodes = any ? (count + 3) / 4 : 0;
  if (in->len - in->at < ncodes)
    return -EBADMSG;
  in->at += ncodes;
  bool nonzero = false;
  for (size_t i = 0; i < count; i++) {
    int code = any ? (in->p[codes_at + i / 4] >> (2 * (i % 4))) & 3 : 0;
    int64_t c = code == 0 ? 0 : code == 1 ? 1 : code == 2 ? -1 : 0;
    if (code == 3 && (get_zigzag(in, &c) != 0 || (c >= -1 && c <= 1)))
      return -EBADMSG;
    nonzero |= c != 0;
    int64_t qi;
    memcpy(&qi, &out[i].v, sizeof(qi));
    double x = bits_dbl(dbl_bits((double)qi / 100.0) + (uint64_t)c);
    /* Canonical: the value splits back into the same q (and so the same
     * c, taken from the same q / 100.0). */
    if (!in_hundredths(x) || round_half_away(x * 100.0) != qi)
      return -EBADMSG;
    out[i].v = x;
  }
  if (any && !nonzero)
    return -EBADMSG;
  if (any && count % 4 != 0 && in->p[codes_at + count / 4] >> (2 * (count % 4)) != 0)
    return -EBADMSG; /* unused code bits */
  return 0;
}

int stor__block_decode(const uint8_t *buf, size_t len, stor_sample_t *out, size_t cap, size_t *n,
                       int *mode) {
  times_t tm; /* the head (mode byte and n) is the walk's to read */
  if (stor__block_walk(&tm, buf, len) != 0)
    return -EBADMSG;
  uint8_t head = buf[0];
  uint64_t count = tm.count;
  if (count > cap || !out)
    return -ENOSPC;
  in_t in = {.p = buf, .len = tm.len, .at = tm.at};
  for (size_t i = 0; i < count; i++)
    if (time_next(&tm, &in, &out[i].t_ms) != 0)
      return -EBADMSG;
  int64_t v;
  if (head == STOR_BLOCK_DEC) {
    if (get_dec(&in, out, count) != 0)
      return -EBADMSG;
  } else if ((head & 0xf) == (STOR_BLOCK_SCALED & 0xf)) {
    int64_t h = 0;
    for (size_t i = 0; i < count; i++) {
      if (get_zigzag(&in, &v) != 0 || __builtin_add_overflow(h, v, &h) || h > HUNDREDTHS_MAX ||
          h < -HUNDREDTHS_MAX)
        return -EBADMSG;
      out[i].v = (double)h / 100.0;
      /* Large hundredths that no double holds exactly were never encoded:
       * the value must give h back (and then h / 100.0 is the value). */
      if (!in_hundredths(out[i].v) || round_half_away(out[i].v * 100.0) != h)
        return -EBADMSG;
    }
  } else {
    uint64_t bits = 0;
    for (size_t i = 0; i < count; i++) {
      uint8_t b;
      if (i == 0) {
        for (int k = 0; k < 8; k++) {
          if (get_byte(&in, &b) != 0)
            return -EBADMSG;
          bits = bits << 8 | b;
        }
      } else {
        uint8_t c;
        if (get_byte(&in, &c) != 0)
          return -EBADMSG;
        if (c != 0) {
          int lead = c >> 4, m = c & 0xf;
          if (m < 1 || lead + m > 8)
            return -EBADMSG;
          uint64_t x = 0;
          for (int k = 0; k < m; k++) {
            if (get_byte(&in, &b) != 0 || ((k == 0 || k == m - 1) && b == 0))
              return -EBADMSG;
            x = x << 8 | b;
          }
          bits ^= x << (8 * (8 - lead - m));
        }
      }
      out[i].v = bits_dbl(bits);
      if (!isfinite(out[i].v))
        return -EBADMSG;
    }
  }
  if (in.at != in.len)
    return -EBADMSG; /* trailing bytes */
  *n = (size_t)count;
  if (mode)
    *mode = head;
  return 0;
}
