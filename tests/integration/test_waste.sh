# The waste ledger end to end: weighing tickets through libcoap's own
# client (separate 2.01 only after the commit, a resend gets 2.04 and the
# same id, other content 4.09, refusals with their reason), a person's
# ticket and a correction through sitectl, figures checked against hand
# arithmetic and against the CSV, the waste alarms, progress kept across a
# restart, the ticket acknowledged right before kill -9 still there, a
# tampered row found by sitectl waste verify, and a keyed scale over CoAPS.
. "$(dirname "$0")/lib.sh"
# This test reads sitectl's English (lib.sh makes it speak Chinese).
export SITECTL_LANG=en
export SITECTL_TOKEN=waste-test-token
# A small site, so the alarms have something to say:
# allowance = (300 x 1,000 + 200 x 500) / 10,000 = 30 + 10 = 40 t.
write_conf "$T/site.conf" <<'CONF'
[site]
area_cast_in_place_m2 = 1000
area_prefab_m2 = 500
progress = 0.42

[device wb-01]
type = scale
insecure = yes

[device wb-02]
type = scale
insecure = yes
resolution_kg = 50

[device wb-03]
type = scale
psk = secret-wb-03-key-00001
CONF
sed -i "s|^listen = 127.0.0.1:$HTTP_PORT|listen = 127.0.0.1:$HTTP_PORT\ntoken = $SITECTL_TOKEN|" "$T/site.conf"
start_gw "$T/site.conf"
now=$(now_s)
S="$BIN/sitectl"

# ticket NO NET [CATEGORY KIND DEST [SCALE [EXTRA]]]: a JSON ticket, gross - tare = NET.
ticket() {
  printf '{"scale":"%s","no":%s,"t":%s,"plate":"黑A12345","dir":"out","gross_kg":%s,"tare_kg":14000,"net_kg":%s,"category":"%s","kind":"%s","dest":"%s","dest_name":"哈尔滨再生资源厂","carrier":"龙江运输"%s}' \
    "${6:-wb-01}" "$1" "$((now - 3600))" "$(($2 + 14000))" "$2" "${3:-engineering}" \
    "${4:-concrete}" "${5:-recycling}" "${7:-}"
}

# w CT -e PAYLOAD | w CT -f FILE: POST /w; prints the response code and
# payload on one line, like lib.sh's coap, for a separate response too (its
# dump then ends with our ACK of it, not with the payload); $T/w.out keeps
# libcoap's dump.
w() {
  ct=$1
  shift
  coap-client-openssl -B 15 -v 7 -m post -t "$ct" "$@" "coap://127.0.0.1:$COAP_PORT/w" \
    >"$T/w.out" 2>&1 || true
  code=$(grep -o ' c:[2-5]\.[0-9][0-9]' "$T/w.out" | head -1 | cut -d: -f2)
  # the payload has no newline of its own: a log line may follow on its line
  body=$(grep -v '^[A-Z][a-z][a-z] [0-9 ]' "$T/w.out" | grep -v '^v:1 ' | grep -v '^ *$' | tail -1 |
    sed 's/[A-Z][a-z][a-z] [0-9 ][0-9] [0-9:.]* [A-Z]\{4\} .*//')
  echo "${code:-none} $body"
}

# 1. A ticket: an empty ACK at once, then 2.01 with its id and hash once stored.
r=$(w 50 -e "$(ticket 1001 17600)")
grep -q 'ACK c:0.00' "$T/w.out" || fail "no empty ACK (separate response): $(cat "$T/w.out")"
expect_code 2.01 "$r" "first ticket"
case "$r" in *'{"id":1,"hash":"'*) ;; *) fail "2.01 carries the id and hash: $r" ;; esac
hash1=$(echo "${r#* }" | json 'j["hash"]')
[ ${#hash1} -eq 64 ] || fail "hash is 64 hex digits: $hash1"

# 2. The same ticket again: 2.04, the same id and hash.
r=$(w 50 -e "$(ticket 1001 17600)")
expect_code 2.04 "$r" "resend"
[ "$(echo "${r#* }" | json 'j["id"], j["hash"]')" = "(1, '$hash1')" ] || fail "resend: $r"
# 3. The same number with other content (within the resolution, so valid): 4.09.
r=$(w 50 -e "$(ticket 1001 17620)")
expect_code 4.09 "$r" "same ticket number, other content"
case "$r" in *"entry 1"*) ;; *) fail "4.09 names the stored entry: $r" ;; esac

# 4. CBOR (60): the same shape, built byte by byte.
"$PY" - "$((now - 3500))" "$T/t.cbor" <<'PY'
import struct, sys
t, path = int(sys.argv[1]), sys.argv[2]
def head(m, v):
    if v < 24: return bytes([m << 5 | v])
    if v < 256: return bytes([m << 5 | 24, v])
    if v < 65536: return bytes([m << 5 | 25]) + struct.pack(">H", v)
    return bytes([m << 5 | 26]) + struct.pack(">I", v)
def enc(o):
    if isinstance(o, int): return head(0, o)
    if isinstance(o, str): b = o.encode(); return head(3, len(b)) + b
    return head(5, len(o)) + b"".join(enc(k) + enc(v) for k, v in o.items())
open(path, "wb").write(enc({"scale": "wb-02", "no": 7, "t": t, "plate": "黑A54321", "dir": "out",
    "gross_kg": 26030, "tare_kg": 14000, "net_kg": 12000, "category": "demolition",
    "kind": "brick_tile", "dest": "backfill", "dest_name": "呼兰回填工程"}))
PY
r=$(w 60 -f "$T/t.cbor")
expect_code 2.01 "$r" "CBOR ticket (net 30 kg off gross - tare, within wb-02's 50 kg)"
case "$r" in *'"id":2,'*) ;; *) fail "CBOR ticket is entry 2: $r" ;; esac

# 5. Refusals, each with its reason.
r=$(w 50 -e "$(ticket 1002 5000 engineering concrete recycling wb-01 | sed 's/"net_kg":5000/"net_kg":5100/')")
expect_code 4.00 "$r" "net does not match gross - tare"
case "$r" in *"net_kg 5100 is not gross_kg - tare_kg = 5000 within the scale's resolution of 20 kg"*) ;; *) fail "reason: $r" ;; esac
r=$(w 50 -e "$(ticket 1003 5000 engineering bricks)")
expect_code 4.00 "$r" "unknown kind"
case "$r" in *'field "kind": "bricks" is not one of concrete'*) ;; *) fail "reason: $r" ;; esac
r=$(w 50 -e "$(ticket 1004 5000 engineering concrete recycling wb-01 ',"dst":1')")
expect_code 4.00 "$r" "unknown field"
r=$(w 50 -e '{"scale":"wb-01","no":5}')
expect_code 4.00 "$r" "missing fields"
case "$r" in *'is required'*) ;; *) fail "reason: $r" ;; esac
r=$(w 50 -e "$(ticket 1005 5000 engineering concrete recycling wb-99)")
expect_code 4.03 "$r" "unknown scale"
r=$(w 50 -e "$(ticket 1006 5000 engineering concrete recycling dust-01)")
expect_code 4.03 "$r" "a dust station is not a scale"
r=$(w 0 -e "$(ticket 1007 5000)")
expect_code 4.15 "$r" "text/plain"
wk=$(coap-client-openssl -B 5 -m get "coap://127.0.0.1:$COAP_PORT/.well-known/core" 2>&1)
case "$wk" in *"</w>"*) ;; *) fail "/.well-known/core lists </w>: $wk" ;; esac

# 6. A person's tickets (a paper slip; spoil; reuse on site) and a correction.
"$S" waste add dir=out category=decoration kind=mixed dest=disposal net_t=8.2 \
  dest_name=松北填埋场 --note "纸质磅单 0087" >"$T/add" || fail "waste add: $(cat "$T/add")"
grep -q "stored as entry 3" "$T/add" || fail "manual ticket is entry 3: $(cat "$T/add")"
"$S" waste add dir=out category=spoil dest=backfill net_kg=23000 >/dev/null || fail "spoil"
"$S" waste add dir=out category=engineering kind=concrete dest=reuse_onsite net_t=5 >/dev/null ||
  fail "reuse on site"
"$S" waste add dir=in material=rebar net_kg=27100 green_cert=yes >/dev/null || fail "delivery"
rc=0; SITECTL_TOKEN= "$S" waste add dir=out category=spoil dest=backfill net_t=1 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q token "$T/err" || fail "an entry without the token: rc=$rc $(cat "$T/err")"
rc=0; "$S" waste add dir=out category=engineering dest=recycling net_t=1 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q '"kind" is required' "$T/err" || fail "bad entry: rc=$rc $(cat "$T/err")"

# Entries: 1 concrete recycling 17.6 | 2 brick_tile backfill 12.0 | 3 mixed disposal 8.2
# | 4 spoil backfill 23.0 | 5 concrete reuse_onsite 5.0 | 6 rebar delivery 27.1
#   generated  = 17.6 + 12.0 + 8.2 + 5.0 = 42.8 t
#   discharged = 17.6 + 12.0 + 8.2       = 37.8 t (reuse on site stays)
#   excluded   = 23.0 t (spoil)
#   utilisation = (5.0 + 17.6 + 12.0) / 42.8 = 0.808411
#   intensity  = 37.8 / 1,500 m2 x 10,000 = 252.0 t per 10,000 m2
#   limit      = 40 / 1,500 x 10,000 = 266.667; allowance used 37.8 / 40 = 0.945
#   projected  = 37.8 / 0.42 = 90.0 t (one progress value: the average to date)
check() { # check EXPR WANT what
  got=$("$S" waste summary --json | json "$1")
  [ "$got" = "$2" ] || fail "$3: $1 = $got, want $2"
}
check 'j["generated_t"]' 42.8 "generated"
check 'j["discharged_t"]' 37.8 "discharged"
check 'j["excluded_t"]' 23.0 "excluded"
check 'j["reused_t"], j["recycled_t"], j["backfill_t"], j["disposed_t"]' '(5.0, 17.6, 12.0, 8.2)' "parts"
check 'j["allowance_t"]' 40.0 "allowance"
check 'j["intensity_t_per_10k_m2"]' 252.0 "intensity"
check 'j["limit_t_per_10k_m2"]' 266.667 "limit"
check 'j["allowance_used"]' 0.945 "share of the allowance"
check 'j["utilisation_rate"]' 0.808411 "utilisation"
check 'j["projected_t"]' 90.0 "projection"
check 'j["by_category"]["demolition"]["backfill_t"]' 12.0 "by category"
check 'j["by_kind"]["concrete"]["generated_t"], j["by_kind"]["concrete"]["utilisation_rate"]' \
  '(22.6, 1.0)' "by kind"

# The CSV adds up by hand: net_t of the rows marked discharged.
"$S" waste tickets --csv >"$T/t.csv" || fail "waste tickets --csv"
sum=$("$PY" -c 'import csv, sys; print(round(sum(float(r["net_t"]) for r in csv.DictReader(open(sys.argv[1])) if r["discharged"] == "1"), 3))' "$T/t.csv")
[ "$sum" = 37.8 ] || fail "CSV discharged rows add up to $sum"
head -1 "$T/t.csv" | grep -q '^id,time,source,type,scale,no,plate' || fail "CSV header"
"$S" waste tickets | grep -q "黑A12345" || fail "tickets table"

# The allowance is 94.5% used and the projection is over it: two alarms.
waste_alarms() {
  "$S" alarms --json | json '" ".join(sorted(a["rule"] for a in (j if isinstance(j, list) else j["alarms"])))' |
    grep -q "waste.allowance waste.projection"
}
wait_for 30 "the waste.allowance and waste.projection alarms" waste_alarms

# A correction: entry 2 went to disposal, not backfill. Discharged stays
# 37.8 t (both leave the site); utilisation = (5.0 + 17.6) / 42.8 = 0.528037.
"$S" waste correct 2 --note "去向填错" dest=disposal dest_name=松北填埋场 >"$T/c" ||
  fail "waste correct: $(cat "$T/c")"
grep -q "entry 2 reversed by entry 7, replaced by entry 8" "$T/c" || fail "correction: $(cat "$T/c")"
check 'j["discharged_t"], j["disposed_t"], j["backfill_t"]' '(37.8, 20.2, 0.0)' "after the correction"
check 'j["utilisation_rate"]' 0.528037 "utilisation after the correction"
rc=0; "$S" waste correct 2 --note again 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q "corrected already" "$T/err" || fail "second correction: $(cat "$T/err")"
"$S" waste tickets --json | json '[(t["id"], t["net_kg"], t["corrects"], t["reversal"]) for t in j["tickets"][6:]]' |
  grep -qx "\[(7, -12000, 2, True), (8, 12000, 2, False)\]" || fail "reversal and replacement rows"

# Progress set through the API survives a restart (the config says 0.42).
"$S" site progress 0.5 | grep -q "50.0%" || fail "site progress 0.5"
"$S" materials import /dev/stdin >/dev/null <<'CSV' || fail "BoQ import"
material,unit,net_qty
rebar,t,60
CSV
stop_gw
start_gw "$T/site.conf"
"$S" site progress --json | json 'j["progress"]' | grep -qx 0.5 || fail "progress after restart"
# rebar: 27.1 t delivered against 60 t x 0.5 = 30 t to date: (27.1 - 30) / 30 = -0.096667
"$S" materials summary --json | json '[(m["material"], m["design_to_date_t"], m["loss_rate_to_date"], m["green_share"]) for m in j["materials"]]' |
  grep -qx "\[('rebar', 30.0, -0.096667, 1.0)\]" || fail "materials: $("$S" materials summary --json)"
"$S" waste disclosure --month "$(date +%Y-%m)" >"$T/d" || fail "disclosure"
grep -q "建筑垃圾排放公示" "$T/d" && grep -q "龙江运输" "$T/d" && grep -q "松北填埋场" "$T/d" ||
  fail "disclosure: $(cat "$T/d")"

# 7. kill -9 right after a 2.01: the ticket is there after the restart.
r=$(w 50 -e "$(ticket 1010 9000)")
expect_code 2.01 "$r" "ticket before kill -9"
id=$(echo "${r#* }" | json 'j["id"]')
kill -9 "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
[ "$(sqlite3 "$T/sitegate.db" 'PRAGMA integrity_check')" = ok ] || fail "integrity after kill -9"
start_gw "$T/site.conf"
"$S" waste tickets --json | json "[t['net_kg'] for t in j['tickets'] if t['id'] == $id]" |
  grep -qx "\[9000\]" || fail "ticket $id acknowledged before kill -9 is lost"
r=$(w 50 -e "$(ticket 1010 9000)")
expect_code 2.04 "$r" "resend after the restart"
"$S" waste verify | grep -q "ledger intact: 9 entries" || fail "verify: $("$S" waste verify)"

# While another program holds the database's write lock, the commit fails
# after the busy timeout: 5.03 with Max-Age, nothing stored; the resend
# once the lock is gone is stored.
lock_db "$T/sitegate.db"
r=$(w 50 -e "$(ticket 1011 3000)")
expect_code 5.03 "$r" "commit while the database is locked"
grep -q "Max-Age" "$T/w.out" || fail "5.03 without Max-Age: $(cat "$T/w.out")"
unlock_db
r=$(w 50 -e "$(ticket 1011 3000)")
expect_code 2.01 "$r" "the resend after the lock"
stop_gw

# 8. Someone edits a stored weight: verify names the entry and exits 1.
sqlite3 "$T/sitegate.db" "UPDATE ledger SET net_kg = 1600 WHERE id = 3"
start_gw "$T/site.conf"
rc=0; "$S" waste verify >"$T/v" || rc=$?
[ $rc -eq 1 ] && grep -q "LEDGER BROKEN at entry 3" "$T/v" || fail "tampering not found: rc=$rc $(cat "$T/v")"

# 9. A scale with a key: CoAPS with its id as the PSK identity, not plain CoAP.
coap-client-openssl -B 5 -v 7 -u wb-03 -k secret-wb-03-key-00001 -m post -t 50 \
  -e "$(ticket 1 4000 engineering metal recycling wb-03)" "coaps://127.0.0.1:$DTLS_PORT/w" \
  >"$T/w.out" 2>&1 || true
grep -o ' c:[2-5]\.[0-9][0-9]' "$T/w.out" | head -1 | grep -q 2.01 ||
  fail "ticket over CoAPS: $(tail -5 "$T/w.out")"
r=$(w 50 -e "$(ticket 2 4000 engineering metal recycling wb-03)")
expect_code 4.03 "$r" "a scale with a key over plain CoAP"
stop_gw
