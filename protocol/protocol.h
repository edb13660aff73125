/* protocol: sitegate's wire formats, pure codecs with no I/O.
 *
 * SenML (RFC 8428) packs from sensors, in JSON and CBOR, decoded into
 * canonical quantities and units (DESIGN.md "Southbound CoAP contract").
 * Every decoder validates the world's input and explains a rejection in a
 * sentence a person can act on; none of them asserts on input. The uplink's
 * TLS session, its signatures and SHA-256 (tlspipe.c, the one file of the
 * tree that includes mbedTLS headers) are here too, shared by both ends: it
 * does no I/O either, the caller carries its ciphertext. */
#ifndef SITEGATE_PROTOCOL_H
#define SITEGATE_PROTOCOL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- quantities: X(enum, SenML name, canonical unit, is_level)
 * is_level: a sound level in dB whose mean is an energy average
 * (GB 12523-2011: 10*lg(mean(10^(0.1*L)))), never an arithmetic one. */
#define PROTO_QUANTITY_MAP(X)                                                                      \
  X(TSP, "tsp", "ug/m3", 0)                                                                        \
  X(PM10, "pm10", "ug/m3", 0)                                                                      \
  X(PM2_5, "pm2_5", "ug/m3", 0)                                                                    \
  X(TEMP, "temp", "Cel", 0)                                                                        \
  X(RH, "rh", "%RH", 0)                                                                            \
  X(PRESSURE, "pressure", "kPa", 0)                                                                \
  X(WIND_SPEED, "wind_speed", "m/s", 0)                                                            \
  X(WIND_DIR, "wind_dir", "deg", 0)                                                                \
  X(LA, "la", "dB", 1)                                                                             \
  X(LAMAX, "lamax", "dB", 0)                                                                       \
  X(POWER, "power", "kW", 0)                                                                       \
  X(ENERGY, "energy", "kWh", 0)                                                                    \
  X(FUEL, "fuel", "l", 0)                                                                          \
  X(ON, "on", "vb", 0)                                                                             \
  X(ENGINE_H, "engine_h", "h", 0)                                                                  \
  X(OPACITY, "opacity", "1/m", 0)                                                                  \
  X(IDLE_H, "idle_h", "h", 0)

typedef enum {
#define X(e, name, unit, level) PROTO_Q_##e,
  PROTO_QUANTITY_MAP(X)
#undef X
      PROTO_Q_COUNT
} proto_quantity_t;

const char *proto_quantity_name(int q); /* "pm10"; NULL when out of range */
const char *proto_quantity_unit(int q); /* canonical unit, "ug/m3" */
bool proto_quantity_is_level(int q);
int proto_quantity_from_name(const char *name); /* -1 when unknown */
/* The units a sensor may send for `q`, for messages: "ug/m3, mg/m3, kg/m3".
 * NULL when out of range. */
const char *proto_quantity_units(int q);
/* Converts `*v`, in SenML unit `unit` (`len` bytes, not NUL-terminated), to
 * the canonical unit of `q`, in place. Returns 0, or -EINVAL when `unit` is
 * not a unit of q's dimension (`on` takes none). */
int proto_unit_to_canonical(int q, const char *unit, size_t len, double *v);

/* ---- SenML packs */
#define PROTO_DEVICE_MAX 47               /* device id bytes, as SG_ID_MAX */
#define PROTO_PACK_MAX 1024               /* records in one pack */
#define PROTO_FUTURE_MAX_S 300.0          /* DESIGN.md: >5 min in the future is refused */
#define PROTO_SENML_REL_LIMIT 268435456.0 /* RFC 8428 4.5.3: t < 2^28 is relative */

typedef struct proto_record {
  uint8_t quantity; /* proto_quantity_t */
  int64_t t_ms;     /* absolute, Unix milliseconds */
  double value;     /* canonical unit; `on` is 0 or 1 */
} proto_record_t;

typedef struct proto_pack {
  char device[PROTO_DEVICE_MAX + 1]; /* bn without its trailing '/' */
  size_t n;
  proto_record_t rec[PROTO_PACK_MAX];
} proto_pack_t;

/* What a decoder may accept. `now` (Unix seconds) resolves relative times and
 * records with no time; records older than `oldest` or more than
 * PROTO_FUTURE_MAX_S after `now` are refused. */
typedef struct proto_limits {
  double now;
  double oldest;
} proto_limits_t;

/* Decode one SenML pack. Content-Format 110 and 50 use the JSON decoder, 112
 * the CBOR one. Returns 0 and fills `out`, or -EBADMSG with a one-line reason
 * in `err` naming the record (0-based index) and the field at fault, e.g.
 * "record 3: unknown unit \"mg\" for pm10". `out` is scratch on failure. */
int proto_senml_decode_json(const uint8_t *buf, size_t len, const proto_limits_t *lim,
                            proto_pack_t *out, char *err, size_t errlen);
int proto_senml_decode_cbor(const uint8_t *buf, size_t len, const proto_limits_t *lim,
                            proto_pack_t *out, char *err, size_t errlen);
/* The JSON decoder as it was, on jansson's tree: the reference that
 * proto_senml_decode_json (jsmn, no tree) is checked against by
 * tests/fuzz/fuzz_senml_diff.c. Same verdicts, values and messages, except
 * that the reason after "invalid JSON at line L, column C: " is jansson's
 * here. Not for the hot path: it allocates per value. */
int proto_senml_decode_json_jansson(const uint8_t *buf, size_t len, const proto_limits_t *lim,
                                    proto_pack_t *out, char *err, size_t errlen);

/* Encode a pack as SenML JSON (for simulators and tests): base name
 * "DEVICE/", absolute times. Returns bytes written (excluding the NUL), or
 * -ENOSPC when `cap` is too small. */
int proto_senml_encode_json(const proto_pack_t *p, char *buf, size_t cap);
/* The same as SenML CBOR (RFC 8428 section 6 integer labels). */
int proto_senml_encode_cbor(const proto_pack_t *p, uint8_t *buf, size_t cap);

/* ======================================================================
 * ---- HJ 212-2017 (uplink to the authority; protocol/hj212.c)
 *
 * A frame is "##", the data segment's byte length as 4 decimal digits, the
 * data segment, its CRC (Appendix A) as 4 hex digits, CRLF. The data segment
 * is "QN=..;ST=..;CN=..;PW=..;MN=..;Flag=..;[PNUM=..;PNO=..;]CP=&&...&&".
 * Inside CP, ';' separates records and ',' separates the key=value pairs of
 * one record. Writing is strict (the field sizes of HJ 212-2017 table 3, an
 * upper-case CRC, QN and Flag always present, messages over 1024 bytes split
 * into PNUM/PNO packets at record boundaries); reading is tolerant of what
 * HJ/T 212-2005 era stations send (no QN, no Flag, a lower-case CRC) and
 * explains every refusal in one line. Our extension CNs and their fields are
 * in protocol/UPLINK.md. */
#define HJ212_DATA_MAX 1024                      /* data segment bytes, HJ 212-2017 6.3.1 */
#define HJ212_FRAME_MAX (6 + HJ212_DATA_MAX + 6) /* ##NNNN, data, CRC, CRLF */
#define HJ212_PAIR_MAX (HJ212_DATA_MAX / 2)      /* "k=" is the shortest pair */
#define HJ212_QN_LEN 17                          /* YYYYMMDDhhmmssSSS */
#define HJ212_QN_MAX 20                          /* the field sizes of HJ 212-2017 table 3 */
#define HJ212_ST_MAX 5
#define HJ212_CN_MAX 7
#define HJ212_PW_MAX 9
#define HJ212_MN_MAX 27
#define HJ212_PNUM_MAX 9999 /* N4 */

/* Flag bits (HJ 212-2017 6.3.3): bit 0 asks for an acknowledgement, bit 1
 * marks a split packet, bits 2-7 hold the protocol version (1 for 2017). */
#define HJ212_FLAG_ACK 1
#define HJ212_FLAG_SPLIT 2
#define HJ212_FLAG_V2017 4

typedef struct hj212_head {
  char qn[HJ212_QN_MAX + 1]; /* "" when absent (reading only) */
  char st[HJ212_ST_MAX + 1];
  char cn[HJ212_CN_MAX + 1];
  char pw[HJ212_PW_MAX + 1];
  char mn[HJ212_MN_MAX + 1];
  int flag;      /* 0-255; -1 when absent (reading only) */
  int pnum, pno; /* both 0 when the message is not split */
} hj212_head_t;

/* One key=value pair of CP; `key` and `value` are offsets of NUL-terminated
 * strings in hj212_frame_t.kv (use hj212_key()/hj212_value()). */
typedef struct hj212_pair {
  uint16_t key, value;
  uint16_t record; /* 0-based record the pair belongs to */
} hj212_pair_t;

/* A decoded frame. It holds no pointers, so it may be copied; it is large
 * (about 5 KB), so keep it off small stacks in hot paths. */
typedef struct hj212_frame {
  hj212_head_t h;
  uint16_t crc;                /* as carried (and checked) */
  size_t data_len;             /* data segment bytes */
  char cp[HJ212_DATA_MAX + 1]; /* CP between "&&" and "&&", as sent */
  size_t cp_len;
  size_t n_records; /* empty records (";;") are skipped */
  size_t n_pairs;   /* in order of appearance */
  hj212_pair_t pair[HJ212_PAIR_MAX];
  char kv[HJ212_DATA_MAX + 1]; /* pair storage */
} hj212_frame_t;

/* CRC of HJ 212-2017 Appendix A over `len` bytes (the data segment):
 * init 0xFFFF; per byte crc = (crc >> 8) ^ byte, then 8 shifts right
 * XOR-ing 0xA001 when the bit shifted out is 1. Not CRC-16/MODBUS. */
uint16_t hj212_crc(const void *buf, size_t len);

/* Decodes one frame: `buf` holds "##" up to the CRC, optionally followed by
 * CRLF (or a bare LF). Returns 0 and fills `out`, or -EBADMSG with a
 * one-line reason in `err`: "too short (4 bytes)", "does not start with ##",
 * "length field \"9ST=\" is not 4 digits", "length 139 but data segment has
 * 140 bytes", "data segment over 1024 bytes (1200)", "CRC 4980 expected
 * 4981", "missing CN", "CP not closed by &&", ... `out` is scratch on
 * failure. No allocation. */
int hj212_decode(const char *buf, size_t len, hj212_frame_t *out, char *err, size_t errlen);

static inline const char *hj212_key(const hj212_frame_t *f, size_t i) {
  return f->kv + f->pair[i].key;
}
static inline const char *hj212_value(const hj212_frame_t *f, size_t i) {
  return f->kv + f->pair[i].value;
}
/* The value of the first pair named `key` (in record `record`, or in any
 * record when `record` is -1); NULL when there is none. */
const char *hj212_get(const hj212_frame_t *f, int record, const char *key);

/* Encodes one message: header `h` and CP content `cp` (`cp_len` bytes,
 * without "CP=&&"/"&&"; records joined by ';', pairs by ','). Strict: QN is
 * 17 digits, ST 1-5 and CN 1-7 letters or digits, PW 1-9 letters or digits,
 * MN 1-27 of [A-Za-z0-9._-], Flag carries version 1 (HJ212_FLAG_V2017,
 * optionally | HJ212_FLAG_ACK) with the split bit clear and h->pnum/pno 0
 * (the encoder sets those); every CP pair is key=value with a key of
 * [A-Za-z0-9_-] and a value free of control bytes and of ";,=&" (see
 * hj212_escape()), all valid UTF-8. When the data segment would exceed
 * HJ212_DATA_MAX the message is split at record boundaries into packets
 * with the split bit, PNUM and PNO (1-based), all with the same QN.
 * Writes the frames, each ending in CRLF, one after another into `buf`
 * (a NUL follows when there is room) and their number into `*nframes`.
 * Returns the bytes written, -EINVAL with a reason in `err` for bad input,
 * -EMSGSIZE when one record cannot fit in a packet, -ENOSPC when `cap` is
 * too small. */
int hj212_encode(const hj212_head_t *h, const char *cp, size_t cp_len, char *buf, size_t cap,
                 size_t *nframes, char *err, size_t errlen);

/* Writes QN (YYYYMMDDhhmmssSSS, NUL-terminated) for Unix milliseconds `ms`
 * at a fixed UTC offset (480 minutes for Beijing time, which HJ 212 uses). */
void hj212_qn_format(int64_t ms, int utc_offset_min, char out[HJ212_QN_LEN + 1]);
/* DataTime (YYYYMMDDhhmmss, optionally with milliseconds) at a fixed UTC
 * offset to Unix seconds; -1 when malformed. */
int64_t hj212_datatime(const char *s, int utc_offset_min);

/* Free text in a CP value (a plate, a site name): percent-encodes '%', ';',
 * ',', '=', '&' and bytes below 0x20 or 0x7F as %XX (upper-case), other
 * bytes (UTF-8) as they are. Returns the length written (NUL added), or
 * -ENOSPC. hj212_unescape() reverses it in place and returns the new
 * length, or -EINVAL for a malformed %XX. */
int hj212_escape(const char *in, char *out, size_t cap);
int hj212_unescape(char *s);

/* ---- our signed extension records (protocol/UPLINK.md "Signed records")
 * The CP of a signed message starts "Seq=N,Prev=<64 hex>," and ends
 * ",Hash=<64 hex>,Sig=<128 hex>" (or ";Hash=" when Hash starts its own
 * record). Hash = SHA-256(Prev bytes || canonical bytes), where the
 * canonical bytes are the CP before the separator that precedes "Hash=";
 * Sig is ECDSA P-256 over Hash, raw r||s. */
typedef struct hj212_signed {
  uint64_t seq;
  uint8_t prev[32], hash[32], sig[64];
  size_t canon_len; /* canonical bytes are cp[0, canon_len) */
} hj212_signed_t;

bool hj212_cn_is_signed(const char *cn); /* our 6011-6053, 6061 */
/* A person's name for a CN we know ("minute data", "waste ticket"), else
 * NULL. */
const char *hj212_cn_name(const char *cn);
/* Finds Seq, Prev, Hash, Sig and the canonical span in a (reassembled) CP.
 * Returns 0, or -EBADMSG with a reason ("Sig is not 128 hex digits"). Checks
 * the layout only; hashing and verifying are the caller's (no crypto here). */
int hj212_signed_parse(const char *cp, size_t cp_len, hj212_signed_t *out, char *err,
                       size_t errlen);
/* The `n` bytes of `b` as the signed records write them: upper-case hex, a
 * NUL after the 2n digits. */
void hj212_hex(const uint8_t *b, size_t n, char *out);

/* ======================================================================
 * ---- weighing tickets (POST /w; protocol/ticket.c)
 *
 * One weighing as JSON (Content-Format 50) or CBOR (60), a flat object of
 * the fields below (DESIGN.md "Southbound CoAP contract"):
 *   {"scale":"wb-01","no":1042,"t":1764100000,"plate":"黑A12345","dir":"out",
 *    "gross_kg":31800,"tare_kg":14200,"net_kg":17600,"category":"engineering",
 *    "kind":"concrete","dest":"recycling","dest_name":"..","carrier":".."}
 * What a ticket records follows from dir and the fields present:
 *   dir "out" + category        waste leaving the site (kind, dest)
 *   dir "in"  + material        a material delivery (green_cert)
 *   dir "out" + material        material returned to its supplier
 * Kilograms are whole numbers. Unknown fields are refused, so a misspelt
 * field never vanishes silently from an append-only ledger. */
#define PROTO_TICKET_PLATE_CHARS 16 /* characters (a Chinese plate has 7 or 8) */
#define PROTO_TICKET_TEXT_CHARS 64  /* free text, as protocol/UPLINK.md allows */
#define PROTO_TICKET_TEXT_BYTES (PROTO_TICKET_TEXT_CHARS * 4) /* UTF-8 */
#define PROTO_MATERIAL_MAX 31                                 /* material ids: [a-z0-9_] */
#define PROTO_TICKET_KG_MAX 100000 /* twice the heaviest road vehicle, 49 t (GB 1589-2016) */
#define PROTO_TICKET_NO_MAX 9007199254740991LL /* 2^53 - 1: exact in JSON */

/* X(enum, name, excluded from the waste limit) -- GB 55012-2021 6.1.1 */
#define PROTO_WASTE_CATEGORY_MAP(X)                                                                \
  X(SPOIL, "spoil", 1)                                                                             \
  X(MUD, "mud", 1)                                                                                 \
  X(ENGINEERING, "engineering", 0)                                                                 \
  X(DEMOLITION, "demolition", 0)                                                                   \
  X(DECORATION, "decoration", 0)
/* X(enum, name); hazardous waste is tracked but is not construction waste */
#define PROTO_WASTE_KIND_MAP(X)                                                                    \
  X(CONCRETE, "concrete")                                                                          \
  X(MORTAR, "mortar")                                                                              \
  X(BRICK_TILE, "brick_tile")                                                                      \
  X(METAL, "metal")                                                                                \
  X(WOOD, "wood")                                                                                  \
  X(PLASTIC, "plastic")                                                                            \
  X(GLASS, "glass")                                                                                \
  X(GYPSUM, "gypsum")                                                                              \
  X(PACKAGING, "packaging")                                                                        \
  X(MIXED, "mixed")                                                                                \
  X(HAZARDOUS, "hazardous")
/* X(enum, name, leaves the site) */
#define PROTO_WASTE_DEST_MAP(X)                                                                    \
  X(REUSE_ONSITE, "reuse_onsite", 0)                                                               \
  X(RECYCLING, "recycling", 1)                                                                     \
  X(BACKFILL, "backfill", 1)                                                                       \
  X(DISPOSAL, "disposal", 1)

typedef enum {
#define X(e, name, excl) PROTO_CAT_##e,
  PROTO_WASTE_CATEGORY_MAP(X)
#undef X
      PROTO_CAT_COUNT
} proto_waste_category_t;
typedef enum {
#define X(e, name) PROTO_KIND_##e,
  PROTO_WASTE_KIND_MAP(X)
#undef X
      PROTO_KIND_COUNT
} proto_waste_kind_t;
typedef enum {
#define X(e, name, leaves) PROTO_DEST_##e,
  PROTO_WASTE_DEST_MAP(X)
#undef X
      PROTO_DEST_COUNT
} proto_waste_dest_t;

typedef enum { PROTO_TICKET_WASTE, PROTO_TICKET_DELIVERY, PROTO_TICKET_RETURN } proto_ticket_type_t;

/* Names of the enums above ("engineering"); NULL when out of range. The
 * from_name functions return -1 for an unknown name. */
const char *proto_waste_category_name(int c);
const char *proto_waste_kind_name(int k);
const char *proto_waste_dest_name(int d);
const char *proto_ticket_type_name(int type); /* "waste", "delivery", "return" */
int proto_waste_category_from_name(const char *s);
int proto_waste_kind_from_name(const char *s);
int proto_waste_dest_from_name(const char *s);
/* Spoil and mud are outside the limit (DESIGN.md "The figures"). */
bool proto_waste_category_excluded(int c);
/* Recycling, backfill and disposal leave the site; reuse on site does not. */
bool proto_waste_dest_leaves_site(int d);

typedef struct proto_ticket {
  char scale[PROTO_DEVICE_MAX + 1];             /* "" when absent (manual entries only) */
  int64_t no;                                   /* the scale's ticket number; 0 when absent */
  int64_t t;                                    /* weighing time, Unix seconds */
  char plate[PROTO_TICKET_PLATE_CHARS * 4 + 1]; /* "" when absent */
  bool dir_in;
  uint8_t type;                                /* proto_ticket_type_t */
  int64_t gross_kg, tare_kg;                   /* -1 when absent */
  int64_t net_kg;                              /* > 0 */
  int8_t category, kind, dest;                 /* -1 when absent (they are for waste only) */
  char material[PROTO_MATERIAL_MAX + 1];       /* deliveries and returns */
  bool green_cert;                             /* deliveries */
  char dest_name[PROTO_TICKET_TEXT_BYTES + 1]; /* receiving facility */
  char carrier[PROTO_TICKET_TEXT_BYTES + 1];   /* haulier */
  char note[PROTO_TICKET_TEXT_BYTES + 1];      /* manual entries only */
} proto_ticket_t;

#define PROTO_TICKET_OLDEST_DAYS 400 /* weighings older than this are refused (`oldest`) */

/* What a ticket decoder accepts. Weighing times before `oldest` or more
 * than PROTO_FUTURE_MAX_S after `now` are refused. A scale's ticket needs
 * scale, no, t, gross_kg and tare_kg (a resend must compare equal, so its
 * time is the scale's); a `manual` one (a person typing a paper slip) may
 * leave them out, `now` standing for an absent "t", and may carry a
 * "note". */
typedef struct proto_ticket_limits {
  double now;
  double oldest;
  bool manual;
} proto_ticket_limits_t;

/* Decode one ticket. Returns 0 and fills `out`, or -EBADMSG with a one-line
 * reason in `err` naming the field at fault, e.g. "field \"kind\":
 * \"bricks\" is not one of concrete, mortar, ...". `out` is scratch on
 * failure. The net weight's agreement with gross - tare depends on the
 * scale and is checked by proto_ticket_check_net(). */
int proto_ticket_decode_json(const uint8_t *buf, size_t len, const proto_ticket_limits_t *lim,
                             proto_ticket_t *out, char *err, size_t errlen);
int proto_ticket_decode_cbor(const uint8_t *buf, size_t len, const proto_ticket_limits_t *lim,
                             proto_ticket_t *out, char *err, size_t errlen);
/* net_kg = gross_kg - tare_kg within `resolution_kg` (the scale's
 * division), when both are present. Returns 0 or -EBADMSG with a reason. */
int proto_ticket_check_net(const proto_ticket_t *t, double resolution_kg, char *err, size_t errlen);
/* Encode a ticket (simulators, tests) with every field it has. Return the
 * bytes written (JSON: a NUL follows), or -ENOSPC. */
int proto_ticket_encode_json(const proto_ticket_t *t, char *buf, size_t cap);
int proto_ticket_encode_cbor(const proto_ticket_t *t, uint8_t *buf, size_t cap);

/* ---- tlspipe.c: the uplink's TLS and signatures (mbedTLS), for both of
 * its ends: the gateway's client (gateway/uplink/tls.c) and the receiver's server
 * (authority/rxtls.c) keep their own files, messages and timing. One
 * session whose ciphertext the caller carries; tlspipe.c is the only file
 * that includes mbedTLS headers, and no mbedTLS type crosses this header. */
typedef struct proto_tls_conf proto_tls_conf_t;
typedef struct proto_tls proto_tls_t;
typedef struct proto_pubkey proto_pubkey_t;
typedef struct proto_signer proto_signer_t;

/* One end's configuration under the uplink's policy (TLS 1.2 only,
 * ECDHE-ECDSA with AES-GCM, the peer's certificate required and checked
 * against `ca`), with its certificate and key. `names` say in errors what
 * the three files are ("CA", "certificate", "key"). Returns 0, or -EINVAL
 * (-ENOMEM) with the file and mbedTLS's reason in `err`. */
int proto_tls_conf_new(bool server, const char *ca, const char *cert, const char *key,
                       const char *const names[3], proto_tls_conf_t **out, char *err,
                       size_t errlen);
void proto_tls_conf_free(proto_tls_conf_t *c); /* accepts NULL */
/* The subject CN of this end's own certificate into `out` ("" when it has
 * none, the last one when it has several). */
void proto_tls_conf_cn(const proto_tls_conf_t *c, char *out, size_t cap);
/* Whether this end's key is an EC P-256 key (UPLINK.md: the gateway's key
 * also signs ledger records). */
bool proto_tls_conf_key_is_p256(const proto_tls_conf_t *c);

/* Ciphertext to write: queue it and return 0, or a negative errno to fail
 * the TLS operation. */
typedef int (*proto_tls_send_fn)(void *arg, const uint8_t *buf, size_t len);
/* A session on `c`, which must outlive it; a client checks the server's
 * certificate against `server_name` (NULL for a server). At most `in_max`
 * bytes of ciphertext wait unconsumed. NULL when out of memory. */
proto_tls_t *proto_tls_new(const proto_tls_conf_t *c, const char *server_name, size_t in_max,
                           proto_tls_send_fn send, void *arg);
void proto_tls_free(proto_tls_t *t); /* accepts NULL */
/* Ciphertext that arrived, copied. Returns 0, or -ENOBUFS past `in_max`. */
int proto_tls_feed(proto_tls_t *t, const uint8_t *buf, size_t len);
/* Advances the handshake: 0 when it is complete (or was), -EAGAIN for more
 * input, or -EPROTO with proto_tls_error() saying why: "`refused`: the
 * verification's finding" for a refused certificate, `alert` (when not
 * NULL) for the peer's fatal alert, else "`what`: mbedTLS's text". */
int proto_tls_handshake(proto_tls_t *t, const char *what, const char *refused, const char *alert);
/* The handshake is complete (and the peer accepted): close_notify is sent
 * from now on. */
void proto_tls_set_done(proto_tls_t *t);
bool proto_tls_done(const proto_tls_t *t);
/* Plaintext: bytes (> 0), 0 when none now, -ECONNRESET when the peer closed
 * the session, -EPROTO. */
int proto_tls_read(proto_tls_t *t, uint8_t *buf, size_t cap);
/* Encrypts and queues all of `buf`. Returns 0 or -EPROTO. */
int proto_tls_write(proto_tls_t *t, const uint8_t *buf, size_t len);
void proto_tls_close_notify(proto_tls_t *t);
const char *proto_tls_error(const proto_tls_t *t); /* "no error" when none */
/* The negotiated ciphersuite's name, after the handshake; static. */
const char *proto_tls_cipher(const proto_tls_t *t);

/* The receiver's check of a gateway after a complete handshake (UPLINK.md
 * "Transport"): the certificate's subject CN must be an MN (1-HJ212_MN_MAX
 * of A-Z a-z 0-9 . _ -) and its key EC P-256. Keeps a copy of the
 * certificate in the session. Returns 0, or -EPROTO with proto_tls_error()
 * saying why. */
int proto_tls_take_peer(proto_tls_t *t);
/* After proto_tls_take_peer(): the CN (the site's MN), the subject as text
 * and the certificate's SHA-256 (64 hex digits); "" before. Owned by the
 * session. */
const char *proto_tls_peer_cn(const proto_tls_t *t);
const char *proto_tls_peer_subject(const proto_tls_t *t);
const char *proto_tls_peer_fingerprint(const proto_tls_t *t);
/* The peer's key, owned by the session, once proto_tls_set_done() was
 * called after proto_tls_take_peer(); NULL before. */
const proto_pubkey_t *proto_tls_peer_key(const proto_tls_t *t);

/* A gateway's public key from its certificate file (PEM or DER), which must
 * hold an EC P-256 key. Returns 0, -ENOMEM, or -EINVAL with the file and
 * the reason in `err`. The caller frees it. */
int proto_pubkey_load(const char *cert_path, proto_pubkey_t **out, char *err, size_t errlen);
void proto_pubkey_free(proto_pubkey_t *k); /* accepts NULL */
/* ECDSA P-256 over the 32-byte digest, `sig` raw r || s (UPLINK.md "Signed
 * records"). Returns 0, or -EBADMSG when it does not verify. */
int proto_pubkey_verify(const proto_pubkey_t *k, const uint8_t hash[32], const uint8_t sig[64]);

/* The gateway's key for signing ledger records: the EC P-256 key in file
 * `key`, with its own random generator, so it may run on a worker thread
 * while sessions run on the loop (one thread at a time per signer). `name`
 * says in errors what the file is ("[uplink] key"). Returns 0, -ENOMEM, or
 * -EINVAL with the reason in `err`. The caller frees it. */
int proto_signer_new(const char *key, const char *name, proto_signer_t **out, char *err,
                     size_t errlen);
void proto_signer_free(proto_signer_t *s); /* accepts NULL */
/* ECDSA P-256 over the 32-byte digest: raw r || s, 32 bytes each. Returns 0
 * or -EIO. */
int proto_sign(proto_signer_t *s, const uint8_t hash[32], uint8_t sig[64]);

/* SHA-256 of a then b (either may be empty). Any thread. */
void proto_sha256(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32]);

/* ---- bill of quantities (CSV): a header naming at least the columns
 * material, unit and net_qty (any order, any case; "description" kept,
 * other columns ignored), then one row per material. Units t or kg.
 * RFC 4180 quoting, a UTF-8 BOM, CRLF, blank lines and lines starting
 * with '#' are all fine. */
#define PROTO_BOQ_DESC_MAX 127
#define PROTO_BOQ_ITEMS_MAX 1000

typedef struct proto_boq_item {
  char material[PROTO_MATERIAL_MAX + 1];
  double net_t;
  char description[PROTO_BOQ_DESC_MAX + 1];
  int line;
} proto_boq_item_t;

/* Parses `len` bytes. Returns 0 with *items (malloc'ed, the caller frees;
 * NULL when n is 0) and *n, or -EBADMSG with every bad line named, one per
 * line, in `err` ("line 7: net_qty \"12,5\" is not a number"), or -ENOMEM. */
int proto_boq_parse(const char *text, size_t len, proto_boq_item_t **items, size_t *n, char *err,
                    size_t errlen);

/* ---- non-road mobile machinery (protocol/machine.c): the register's
 * rows, its CSV import, and gate events (POST /g, protocol/COAP.md).
 *
 * A machine is named by its environmental registration code (环保登记编码)
 * everywhere: 1-31 of A-Z a-z 0-9 and '-'. Its engine emission stage is
 * one of GB 20891-2014's (China I-IV; "0" for machines from before any
 * stage) or "electric", which is a class of its own. */
#define PROTO_MACHINE_CODE_MAX 31
#define PROTO_MACHINE_TEXT_MAX 63 /* type, owner: bytes */
#define PROTO_MACHINE_LABEL_MAX 15
#define PROTO_MACHINE_ROWS_MAX 10000
#define PROTO_MACHINE_KW_MAX 10000.0

typedef enum {
  PROTO_STAGE_0,
  PROTO_STAGE_I,
  PROTO_STAGE_II,
  PROTO_STAGE_III,
  PROTO_STAGE_IV,
  PROTO_STAGE_ELECTRIC,
  PROTO_STAGE_COUNT
} proto_stage_t;
typedef enum {
  PROTO_FUEL_DIESEL,
  PROTO_FUEL_PETROL,
  PROTO_FUEL_ELECTRIC,
  PROTO_FUEL_COUNT
} proto_fuel_t;

const char *proto_stage_name(int s);      /* "0", "I", ..., "electric"; NULL out of range */
int proto_stage_from_name(const char *s); /* -1 when unknown */
const char *proto_fuel_name(int f);       /* "diesel", "petrol", "electric" */
int proto_fuel_from_name(const char *s);
/* Whether `s` is a registration code (see above). */
bool proto_machine_code_ok(const char *s);

typedef struct proto_machine {
  char code[PROTO_MACHINE_CODE_MAX + 1];
  char type[PROTO_MACHINE_TEXT_MAX + 1];   /* excavator, loader, crane, ... (free text) */
  int8_t stage;                            /* proto_stage_t */
  double power_kw;                         /* rated net power, > 0 */
  int8_t fuel;                             /* proto_fuel_t */
  char owner[PROTO_MACHINE_TEXT_MAX + 1];  /* owner or lessor; "" unknown */
  char label[PROTO_MACHINE_LABEL_MAX + 1]; /* the label's colour, a-z; "" unknown */
  char terminal[PROTO_DEVICE_MAX + 1];     /* its monitoring terminal's device id; "" none */
  int line;                                /* CSV line, for messages */
} proto_machine_t;

/* Checks one row: 0, or -EBADMSG with the field at fault in `err`. An
 * electric machine must have fuel electric and the other way round. */
int proto_machine_check(const proto_machine_t *m, char *err, size_t errlen);

/* The register as CSV: a header naming at least code, type, stage and
 * power_kw (any order, any case; fuel, owner, label and terminal are
 * optional; other columns are ignored), then one machine per row. Quoting,
 * a UTF-8 BOM, CRLF, blank lines and '#' lines as the bill of quantities.
 * Fuel defaults to diesel (electric for stage electric). Returns 0 with
 * *items (malloc'ed, the caller frees; NULL when n is 0), or -EBADMSG with
 * every bad line named in `err`, or -ENOMEM. A code twice is refused. */
int proto_machine_csv_parse(const char *text, size_t len, proto_machine_t **items, size_t *n,
                            char *err, size_t errlen);

/* One gate event: a machine passing a gate reader, POST /g. */
#define PROTO_GATE_NO_MAX 9007199254740991LL /* 2^53 - 1 */
typedef struct proto_gate_event {
  char gate[PROTO_DEVICE_MAX + 1]; /* the reader's device id */
  int64_t no;                      /* the reader's event number, never reused */
  int64_t t;                       /* Unix seconds, the reader's */
  char code[PROTO_MACHINE_CODE_MAX + 1];
  bool in; /* true: entering the site; false: leaving */
} proto_gate_event_t;

/* Decodes {"gate","no","t","code","dir":"in"|"out"}, every field required,
 * no other; times before `oldest` or more than PROTO_FUTURE_MAX_S after
 * `now` are refused. Returns 0, or -EBADMSG naming the field. The CBOR
 * form is a definite map with text keys and the same values. */
int proto_gate_decode_json(const uint8_t *buf, size_t len, double now, double oldest,
                           proto_gate_event_t *out, char *err, size_t errlen);
int proto_gate_decode_cbor(const uint8_t *buf, size_t len, double now, double oldest,
                           proto_gate_event_t *out, char *err, size_t errlen);
/* Encoders (simulators, tests): bytes written, or -ENOSPC. */
int proto_gate_encode_json(const proto_gate_event_t *e, char *buf, size_t cap);
int proto_gate_encode_cbor(const proto_gate_event_t *e, uint8_t *buf, size_t cap);

/* ---- Why a parser or check refused, for a person (protocol/why.c)
 *
 * The ticket and machine parsers and checks write an English sentence into
 * `err` for logs and scripts and, alongside it, a stable code with the
 * sentence's values as text: the local API sends them as its error's
 * `code` and `args` (protocol/HTTP.md "Errors"), and the catalogue's
 * "err.<code>" says it in the person's language. Only values a person
 * typed or can act on are args; English words never are. */
#define PROTO_WHY_MAP(X)                                                                           \
  X(NONE, "detail")                                                                                \
  X(TICKET_NO_DATA, "ticket_no_data")                                                              \
  X(TICKET_JSON, "ticket_json")                                                                    \
  X(TICKET_NOT_OBJECT, "ticket_not_object")                                                        \
  X(TICKET_CBOR, "ticket_cbor")                                                                    \
  X(TICKET_UNKNOWN_FIELD, "ticket_unknown_field")                                                  \
  X(TICKET_TWICE, "ticket_twice")                                                                  \
  X(TICKET_TYPE_INT, "ticket_type_int")                                                            \
  X(TICKET_TYPE_TEXT, "ticket_type_text")                                                          \
  X(TICKET_TYPE_DIR, "ticket_type_dir")                                                            \
  X(TICKET_TYPE_BOOL, "ticket_type_bool")                                                          \
  X(TICKET_RANGE, "ticket_range")                                                                  \
  X(TICKET_FINITE, "ticket_finite")                                                                \
  X(TICKET_WHOLE, "ticket_whole")                                                                  \
  X(TICKET_RANGE_VALUE, "ticket_range_value")                                                      \
  X(TICKET_UTF8, "ticket_utf8")                                                                    \
  X(TICKET_CONTROL, "ticket_control")                                                              \
  X(TICKET_LONG, "ticket_long")                                                                    \
  X(TICKET_ID, "ticket_id")                                                                        \
  X(TICKET_ID_LOWER, "ticket_id_lower")                                                            \
  X(TICKET_ENUM, "ticket_enum")                                                                    \
  X(TICKET_DIR, "ticket_dir")                                                                      \
  X(TICKET_NOTE_MANUAL, "ticket_note_manual")                                                      \
  X(TICKET_REQUIRED, "ticket_required")                                                            \
  X(TICKET_SCALE_NO, "ticket_scale_no")                                                            \
  X(TICKET_GROSS_TARE, "ticket_gross_tare")                                                        \
  X(TICKET_TARE_GROSS, "ticket_tare_gross")                                                        \
  X(TICKET_T_RELATIVE, "ticket_t_relative")                                                        \
  X(TICKET_T_FUTURE, "ticket_t_future")                                                            \
  X(TICKET_T_OLD, "ticket_t_old")                                                                  \
  X(TICKET_CAT_MATERIAL, "ticket_cat_material")                                                    \
  X(TICKET_IN_MATERIAL, "ticket_in_material")                                                      \
  X(TICKET_OUT_NEEDS, "ticket_out_needs")                                                          \
  X(TICKET_NOT_DELIVERY, "ticket_not_delivery")                                                    \
  X(TICKET_NOT_RETURN, "ticket_not_return")                                                        \
  X(TICKET_NOT_WASTE, "ticket_not_waste")                                                          \
  X(TICKET_DEST_REQUIRED, "ticket_dest_required")                                                  \
  X(TICKET_KIND_REQUIRED, "ticket_kind_required")                                                  \
  X(TICKET_NET, "ticket_net")                                                                      \
  X(MACHINE_CODE, "machine_code")                                                                  \
  X(MACHINE_TYPE, "machine_type")                                                                  \
  X(MACHINE_STAGE, "machine_stage")                                                                \
  X(MACHINE_POWER, "machine_power")                                                                \
  X(MACHINE_FUEL, "machine_fuel")                                                                  \
  X(MACHINE_ELECTRIC, "machine_electric")                                                          \
  X(MACHINE_OWNER, "machine_owner")                                                                \
  X(MACHINE_LABEL, "machine_label")                                                                \
  X(MACHINE_TERMINAL, "machine_terminal")                                                          \
  X(MCSV_NUL, "mcsv_nul")                                                                          \
  X(MCSV_CELL, "mcsv_cell")                                                                        \
  X(MCSV_COLUMNS, "mcsv_columns")                                                                  \
  X(MCSV_LONG, "mcsv_long")                                                                        \
  X(MCSV_STAGE, "mcsv_stage")                                                                      \
  X(MCSV_POWER, "mcsv_power")                                                                      \
  X(MCSV_FUEL, "mcsv_fuel")                                                                        \
  X(MCSV_TWICE, "mcsv_twice")                                                                      \
  X(MCSV_MANY, "mcsv_many")                                                                        \
  X(MCSV_HEADER, "mcsv_header")                                                                    \
  X(GATE_EVENT, "gate_event")

typedef enum {
#define X(e, s) PROTO_WHY_##e,
  PROTO_WHY_MAP(X)
#undef X
      PROTO_WHY_COUNT
} proto_why_code_t;

#define PROTO_WHY_ARGS 6
typedef struct proto_why {
  proto_why_code_t code; /* PROTO_WHY_NONE: no refusal recorded */
  int line;              /* the CSV line at fault; 0 for one record */
  int more;              /* further faulty CSV lines (proto_why_lines()) */
  int nargs;
  char args[PROTO_WHY_ARGS][96]; /* the sentence's values, in order: {1}, {2}, ... */
} proto_why_t;

/* The register CSV's bad lines, the first PROTO_WHY_LINES of them, after a
 * refusal of proto_machine_csv_parse on this thread (proto_why() is the
 * first, its `more` the count of the others); other refusals have none.
 * Returns the count and points *out at them. */
#define PROTO_WHY_LINES 10
int proto_why_lines(const proto_why_t **out);
/* Parsers only: records bad CSV lines (`more` beyond these `n`). */
void proto__why_lines_set(const proto_why_t *l, int n, int more);

/* "ticket_required"; "?" out of range. */
const char *proto_why_name(proto_why_code_t c);
/* The last refusal of proto_ticket_decode_*, proto_ticket_check_net,
 * proto_machine_check and proto_machine_csv_parse on this thread (like
 * errno: valid until the next of them on the same thread). Never NULL. */
const proto_why_t *proto_why(void);
/* Parsers only: records `code` with the values of `fmt`'s conversions
 * (flags, digits, precision, h l ll z j; d i u x c s f g e) as text. */
void proto__why_set(proto_why_code_t code, const char *fmt, va_list ap);
/* Calls `put` with the value of each of `fmt`'s conversions, formatted
 * alone, in order (flags, digits, precision, h l ll z j; d i u x c s f g
 * e; `%%` is no value). Stops at a conversion it does not know and returns
 * how many it gave. Behind proto__why_set and the HTTP API's error args. */
int proto_fmt_values(const char *fmt, va_list ap, void (*put)(void *arg, const char *val),
                     void *arg);
/* Forgets the last refusal (then proto_why() is PROTO_WHY_NONE): every
 * function above starts so; a caller that fails on its own before calling
 * one does too, so that it never reports an older refusal. */
void proto_why_clear(void);
proto_why_t *proto__why_mut(void);

#endif
