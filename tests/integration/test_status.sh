# GET /api/status on a site of 3,003 devices: streamed while it is sent
# (chunked, never built whole in memory), and every device is in it, in the
# order of their ids, with its last pack, latest values and refusals by
# reason as protocol/HTTP.md says.
. "$(dirname "$0")/lib.sh"
write_conf "$T/site.conf" < <(for i in $(seq 1 3000); do printf '[device many-%d]\ntype = dust\ninsecure = yes\n\n' "$i"; done)
start_gw "$T/site.conf"
now=$(now_s)

r=$(coap post /r 110 "[{\"bn\":\"dust-01/\",\"bt\":$now.25,\"n\":\"pm10\",\"v\":56.3},{\"n\":\"pm2_5\",\"v\":31}]")
expect_code 2.04 "$r" "dust-01's pack"
r=$(coap post /r 110 "[{\"bn\":\"many-2999/\",\"bt\":$((now - 60)),\"n\":\"pm10\",\"v\":1e-05}]")
expect_code 2.04 "$r" "many-2999's pack"
r=$(coap post /r 110 "[{\"bn\":\"dust-02/\",\"bt\":$now,\"n\":\"pm10\",\"v\":7}]")
expect_code 4.03 "$r" "dust-02 over plain CoAP"
wait_for 30 "the packs committed" committed

curl -sf -D "$T/head" -o "$T/status.json" "$SITECTL_URL/api/status" || fail "GET /api/status"
grep -qi '^Transfer-Encoding: chunked' "$T/head" || fail "/api/status is not streamed: $(cat "$T/head")"
grep -qi '^Content-Type: application/json; charset=utf-8' "$T/head" || fail "Content-Type: $(cat "$T/head")"
"$PY" - "$T/status.json" "$now" <<'PY' || fail "/api/status: see above"
import json, sys
j = json.load(open(sys.argv[1])); now = int(sys.argv[2])
errs = []
def want(what, ok):
    if not ok: errs.append(what)
ids = [d["id"] for d in j["devices"]]
want("every device, in the order of their ids", ids == sorted(["dust-01", "dust-02", "noise-01"] + ["many-%d" % i for i in range(1, 3001)]))
want("devices_total", j["devices_total"] == 3003)
want("the head", j["storage"]["queued"] == 0 and j["ingest"]["records"] == 3 and j["site"]["id"] == "TEST-SITE-01")
keys = ["id", "type", "interval_s", "last_seen", "online", "packs", "records", "rejects", "reject_reasons", "latest"]
want("each device's keys", all(list(d) == keys for d in j["devices"]))
d = {x["id"]: x for x in j["devices"]}
a = d["dust-01"]
want("dust-01: %r" % a, a["type"] == "dust" and a["online"] is True and a["packs"] == 1 and a["records"] == 2
     and a["rejects"] == 0 and a["reject_reasons"] == {} and isinstance(a["last_seen"], float)
     and abs(a["last_seen"] - now) < 60)
t = now + 0.25 # times to the millisecond (protocol/HTTP.md: 13 digits)
want("dust-01 latest: %r" % a["latest"], a["latest"] == {"pm10": {"t": t, "v": 56.3}, "pm2_5": {"t": t, "v": 31.0}})
b = d["dust-02"]
want("dust-02: %r" % b, b["rejects"] == 1 and b["reject_reasons"] == {"needs_dtls": 1} and b["latest"] == {}
     and b["packs"] == 0 and b["last_seen"] is None)
c = d["many-2999"]
want("many-2999: %r" % c, c["latest"] == {"pm10": {"t": float(now - 60), "v": 1e-05}} and c["records"] == 1)
want("the silent ones", all(x["latest"] == {} and x["last_seen"] is None and x["online"] is False
                            for x in j["devices"] if x["id"] not in ("dust-01", "dust-02", "many-2999")))
for e in errs: print("status:", e)
sys.exit(1 if errs else 0)
PY
# HEAD answers the same headers and no body
[ "$(curl -sf -I "$SITECTL_URL/api/status" | tr -d '\r' | grep -ci '^content-type: application/json')" = 1 ] ||
  fail "HEAD /api/status"
stop_gw
echo "status: 3,003 devices streamed as documented"
