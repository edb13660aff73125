#!/bin/bash
# Every endpoint of the local API on a demo-like site (demo_site.sh): reads
# answer without a token, every action is refused with 401 without it (and
# with a wrong one) and works with it; /metrics, the monthly report, the
# dashboard's files (no way out of the web root), sitectl report/metrics and
# sitectl's message when the gateway is not running.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/demo_site.sh"
start_demo
U=$SITECTL_URL

# get PATH [curl args...]: the body; fails on a status other than 200
# (buffered: a `grep -q` after it may stop reading early)
get() {
  p=$1
  shift
  out=$(curl -sf "$@" "$U$p") || fail "GET $p failed"
  printf '%s\n' "$out"
}
# code METHOD PATH [BODY [TOKEN]]: the HTTP status only
code() {
  curl -s -o /dev/null -w '%{http_code}' -X "$1" ${3:+-H 'Content-Type: application/json' -d "$3"} \
    ${4:+-H "Authorization: Bearer $4"} "$U$2"
}
check() { [ "$2" = "$3" ] || fail "$1: wanted $3, got $2"; }

# ---- reads
get /api/status | json 'j["site"]["id"] == "230100-HRB-0001" and j["ingest"]["records"] > 0' | grep -qx True ||
  fail "/api/status"
get "/api/readings?device=dust-01&quantity=pm10&step=1m&since=$(($(now_s) - 7200))" |
  json 'len(j["points"]) > 10' | grep -qx True || fail "/api/readings: no minute points"
get "/api/noise?since=$(($(now_s) - 7200))" | json 'sum(w["complete"] for w in j["windows"]) >= 2' |
  grep -qx True || fail "/api/noise: no complete window in the simulated hour"
get "/api/dust?window=15m&since=$(($(now_s) - 7200))" | json 'len(j["windows"]) > 0' | grep -qx True ||
  fail "/api/dust"
get /api/waste/summary | json 'j["allowance_t"] == 10 and j["discharged_t"] >= 8.2' | grep -qx True ||
  fail "/api/waste/summary"
get "/api/waste/tickets?limit=5" | json 'len(j["tickets"]) == 5' | grep -qx True || fail "tickets"
get "/api/waste/tickets?format=csv&limit=5" | head -1 | grep -q '^id,time,source' || fail "tickets CSV"
get /api/waste/verify | json 'j["ok"]' | grep -qx True || fail "/api/waste/verify"
get /api/waste/disclosure | json '"by_category" in j' | grep -qx True || fail "disclosure"
get /api/materials/summary | json 'len(j["materials"]) > 0' | grep -qx True || fail "materials"
get /api/site/progress | json 'j["progress"] == 0.42' | grep -qx True || fail "progress"
get /api/equipment | json 'len(j["units"]) >= 4' | grep -qx True || fail "/api/equipment"
get /api/equipment/log >/dev/null
get /api/energy | json 'len(j["units"]) >= 4' | grep -qx True || fail "/api/energy"
get /api/carbon | json '"period" in j' | grep -qx True || fail "/api/carbon"
get /api/uplink | json 'j["state"] == "off"' | grep -qx True || fail "/api/uplink"
ID=$(get /api/alarms | json '[a["id"] for a in j["alarms"] if a["rule"] == "waste.allowance"][0]')
get "/api/alarms/$ID" | json 'j["events"][0]["event"] == "raised"' | grep -qx True ||
  fail "/api/alarms/$ID"
get "/api/alarms?active=0" | json "any(a['id'] == $ID for a in j['alarms'])" | grep -qx True ||
  fail "alarm history"

# ---- actions: 401 without the token or with a wrong one, then done with it
ACK='{"by":"张工","note":"已安排清运车辆"}'
check "ack without token" "$(code POST "/api/alarms/$ID/ack" "$ACK")" 401
check "ack with a wrong token" "$(code POST "/api/alarms/$ID/ack" "$ACK" wrong-token)" 401
check "ticket without token" "$(code POST /api/waste/tickets '{"dir":"out","category":"engineering","kind":"concrete","dest":"recycling","net_kg":8200}')" 401
check "correction without token" "$(code POST /api/waste/corrections '{"corrects":1,"note":"x"}')" 401
check "BoQ without token" "$(code PUT /api/materials/boq '{"items":[]}')" 401
check "progress without token" "$(code PUT /api/site/progress '{"progress":0.5}')" 401
check "override without token" "$(code POST /api/equipment/crane-02/override '{"on":false,"for_s":600,"reason":"t"}')" 401
get "/api/alarms" | json "[a['acked'] for a in j['alarms'] if a['id'] == $ID][0]" | grep -qx False ||
  fail "a refused ack changed the alarm"
# (a ticket first: it escalates the alarm, which withdraws an acknowledgement)
check "ticket" "$(code POST /api/waste/tickets '{"dir":"out","category":"engineering","kind":"concrete","dest":"recycling","net_kg":8200,"note":"纸质磅单"}' "$TOKEN")" 201
# The ticket is committed when it is answered; the alarms are re-evaluated
# after, on the loop: wait until the alarm's figure includes the ticket.
D=$(get /api/waste/summary | json 'j["discharged_t"]')
evaluated() {
  get /api/alarms | json "[a['figure'] for a in j['alarms'] if a['id'] == $ID][0] >= $D - 1e-6" | grep -qx True
}
wait_for 30 "alarm $ID re-evaluated with the ticket (its figure at least $D t)" evaluated
check "ack" "$(code POST "/api/alarms/$ID/ack" "$ACK" "$TOKEN")" 200
get "/api/alarms" | json "[a['acked_by'] for a in j['alarms'] if a['id'] == $ID][0]" | grep -qx "张工" ||
  fail "the ack is not shown"
check "a second ack is refused" "$(code POST "/api/alarms/$ID/ack" '{"by":"root","note":"again"}' "$TOKEN")" 409
get "/api/alarms" | json "[a['acked_by'] for a in j['alarms'] if a['id'] == $ID][0]" | grep -qx "张工" ||
  fail "a second ack replaced the first name"
check "progress" "$(code PUT /api/site/progress '{"progress":0.5}' "$TOKEN")" 200
check "override" "$(code POST /api/equipment/crane-02/override '{"on":false,"for_s":600,"reason":"检修","by":"test"}' "$TOKEN")" 200
check "a read needs no token" "$(code GET /api/status)" 200
check "method" "$(code POST /api/status '{}')" 405
check "unknown endpoint" "$(code GET /api/nope)" 404
check "unknown endpoint (POST)" "$(code POST /api/nope '{}')" 404

# ---- /metrics
M=$(curl -sfi "$U/metrics") || fail "/metrics"
printf '%s' "$M" | grep -qi '^content-type: text/plain; version=0.0.4' || fail "/metrics type"
for want in 'sitegate_ingest_requests_total [1-9]' 'sitegate_ingest_records_total [1-9]' \
  'sitegate_ingest_rejects_total{reason="bad_pack"} ' 'sitegate_storage_queue_depth [0-9]' \
  'sitegate_storage_commit_seconds_bucket\{le="\+Inf"\} [1-9]' 'sitegate_storage_commit_seconds_count [1-9]' \
  'sitegate_outbox_backlog{class="rtd"} ' 'sitegate_uplink_state{state="off"} 1' \
  'sitegate_alarms_active{rule="waste.allowance",level="(warning|alarm)"} 1'; do
  printf '%s' "$M" | grep -Eq "^$want" || fail "/metrics has no \"$want\""
done

# ---- the monthly report
MONTH=$(TZ=Asia/Shanghai date +%Y-%m)
get "/api/report?month=$MONTH" | json '[p["name"] for p in j["parts"]] == ["noise","dust","alarms","waste","materials","energy","machinery"]' |
  grep -qx True || fail "/api/report parts"
get "/api/report?month=$MONTH" | json "[r[9] for t in j['tables'] if t['name'] == 'alarms' for r in t['rows'] if r[0] == $ID][0]" |
  grep -qx "张工" || fail "the report does not show who acknowledged"
get "/api/report?month=$MONTH&format=html" | grep -q '月度工地报告' || fail "report HTML"
# English mode is English throughout: no Chinese outside the site's own
# names (the site, its facilities and carriers, people and notes)
get "/api/report?month=$MONTH&format=html&lang=en" >"$T/report-en.html"
grep -q 'monthly site report' "$T/report-en.html" || fail "report HTML in English"
$PY - "$T/report-en.html" <<'PY' || fail "Chinese in the English report"
import re, sys
text = open(sys.argv[1], encoding='utf-8').read()
rows = re.findall(r'<(?:p|h[123]|th|span)[^>]*>([^<]*)<', text)
bad = [r for r in rows if re.search(r'[\u4e00-\u9fff]', r) and '·' not in r]
cells = re.findall(r'<td[^>]*>([^<]*)<', text)
bad += [c for c in cells if c in ('夜间', '昼间', '告警', '预警', '正常', '是', '否', '钢筋', '混凝土', '无')]
assert not bad, bad[:5]
PY
get "/api/report?month=$MONTH&format=csv&table=alarms" | head -1 | grep -q '^id,rule,source' ||
  fail "report CSV"
check "report bad month" "$(code GET "/api/report?month=2026-13")" 400
check "report future month" "$(code GET "/api/report?month=2099-01")" 404
check "report unknown table" "$(code GET "/api/report?month=$MONTH&format=csv&table=nope")" 404
"$BIN/sitectl" report --month "$MONTH" --out "$T/report.html" >/dev/null || fail "sitectl report --out"
grep -q '噪声' "$T/report.html" || fail "the saved report"
out=$("$BIN/sitectl" report --month "$MONTH" --csv waste_categories) || fail "sitectl report --csv exited $?"
printf '%s\n' "$out" | grep -q '^category,' || fail "sitectl report --csv: $(printf '%s' "$out" | head -3)"
out=$("$BIN/sitectl" report --month "$MONTH") || fail "sitectl report exited $?"
printf '%s\n' "$out" | grep -q '六、能耗与碳排放' || fail "sitectl report has no energy part"
out=$("$BIN/sitectl" --json metrics) || fail "sitectl --json metrics exited $?"
printf '%s\n' "$out" | json 'any(m["name"] == "sitegate_ingest_records_total" and m["value"] > 0 for m in j)' |
  grep -qx True || fail "sitectl metrics --json"
rc=0
out=$("$BIN/sitectl" readings dust-01 pm25 2>&1) || rc=$?
check "sitectl exit on an unknown quantity" "$rc" 2
printf '%s' "$out" | grep -q '是否要 pm2_5' || fail "no hint of pm2_5: $out"
out=$(SITECTL_LANG=en "$BIN/sitectl" readings dust-01 pm25 2>&1) || true
printf '%s' "$out" | grep -q 'did you mean pm2_5' || fail "no hint of pm2_5 in English: $out"
rc=0
out=$(SITECTL_TOKEN=not-the-token "$BIN/sitectl" site progress 0.5 2>&1) || rc=$?
printf '%s' "$out" | grep -q '网关拒绝了 SITECTL_TOKEN 中的令牌' || fail "wrong token message: $out"
rc=0
out=$(SITECTL_TOKEN= SITECTL_LANG=en "$BIN/sitectl" site progress 0.5 2>&1) || rc=$?
printf '%s' "$out" | grep -q 'set SITECTL_TOKEN' || fail "missing token message: $out"
# the gateway's refusals in the person's language: a stable code and its
# args in the JSON, the catalogue's text in sitectl (and the dashboard)
check "ack of no alarm" "$(code POST /api/alarms/987654/ack '{"by":"x","note":"y"}' "$TOKEN")" 404
curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"by":"x","note":"y"}' "$U/api/alarms/987654/ack" |
  json 'j["code"] == "no_active_alarm" and j["args"] == ["987654"] and "987654" in j["error"]' |
  grep -qx True || fail "the refusal's code and args"
rc=0
out=$(SITECTL_TOKEN=$TOKEN "$BIN/sitectl" alarm ack 987654 --note 已处理 2>&1) || rc=$?
check "sitectl exit on a refused ack" "$rc" 1
printf '%s' "$out" | grep -q '网关拒绝：没有进行中的告警 987654（已消除的告警无需确认）' ||
  fail "the refusal in Chinese: $out"
printf '%s' "${out//sitectl/}" | grep -q '[a-z]\{3,\}' && fail "English in the Chinese refusal: $out"
out=$(SITECTL_TOKEN=$TOKEN "$BIN/sitectl" equipment set em-site off --for 1h --reason 测试 2>&1) || true
printf '%s' "$out" | grep -q '网关拒绝：没有受控设备“em-site”' || fail "an override of no unit in Chinese: $out"
# a ticket's bad field: the parser's code and values, in Chinese
rc=0
out=$(SITECTL_TOKEN=$TOKEN "$BIN/sitectl" waste add dir=out category=decoration kind=mixed \
  dest=disposal gross_kg=1000 tare_kg=2000 net_kg=500 2>&1) || rc=$?
check "sitectl exit on a refused ticket" "$rc" 1
printf '%s' "$out" | grep -q '网关拒绝：皮重 2000 公斤大于毛重 1000 公斤' || fail "a bad ticket field in Chinese: $out"
printf '%s' "${out//sitectl/}" | grep -q '[A-Za-z]' && fail "English in the Chinese ticket refusal: $out"
out=$(SITECTL_TOKEN=$TOKEN SITECTL_LANG=en "$BIN/sitectl" waste add dir=out category=decoration \
  kind=mixed dest=disposal gross_kg=1000 tare_kg=2000 net_kg=500 2>&1) || true
printf '%s' "$out" | grep -q 'tare_kg 2000 is more than gross_kg 1000' || fail "a bad ticket field in English: $out"
curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"dir":"out","category":"decoration","kind":"mixed","dest":"disposal","net_kg":1e9}' "$U/api/waste/tickets" |
  json 'j["code"] == "ticket_range_value" and j["args"][:2] == ["net_kg", "1000000000"] and "out of range" in j["error"]' |
  grep -qx True || fail "a ticket's field refusal in the JSON"
out=$(SITECTL_TOKEN=$TOKEN SITECTL_LANG=en "$BIN/sitectl" alarm ack 987654 --note done 2>&1) || true
printf '%s' "$out" | grep -q 'no active alarm 987654' || fail "the refusal in English: $out"
get /messages.json | json 'j["zh"]["alarm.noise.laeq"] != "" and set(j["zh"]) == set(j["en"])' | grep -qx True ||
  fail "/messages.json is not the catalogue"

# ---- the site-office screen's figures: everything the TV shows, and
# nothing it must not (no names, notes or acknowledgements; see test_http.c
# for "no token off loopback")
get /api/screen >"$T/screen.json" || fail "/api/screen"
json 'sorted(j) == ["alarms","devices_online","devices_total","dust","equipment","noise","now","site","waste"] and len(j["noise"]["sliding"]) == 2 and len(j["alarms"]) >= 1 and j["waste"]["allowance_t"] > 0 and len(j["equipment"]["groups"]) > 0' \
  <"$T/screen.json" | grep -qx True || fail "/api/screen: $(head -c 400 "$T/screen.json")"
grep -q '"acked_by"\|"note"\|"events"\|"latest"\|张工' "$T/screen.json" && fail "/api/screen tells more than the board: $(cat "$T/screen.json")"
check "POST /api/screen" "$(code POST /api/screen '{}' "$TOKEN")" 405

# ---- the dashboard's files
get / -i | grep -qi '^content-type: text/html' || fail "/ is not the dashboard"
get / | grep -q 'app.js' || fail "index.html"
get /app.js -i | grep -qi '^content-type: text/javascript' || fail "app.js type"
get /vendor/uPlot.esm.js | grep -q 'uPlot' || fail "uPlot is not served"
for bad in '/../etc/passwd' '/%2e%2e/%2e%2e/etc/passwd' '/vendor/../../../etc/passwd' '/.git/config' \
  '/x/.hidden.js' '//etc/passwd' '/index.html/'; do
  c=$(curl -s --path-as-is -o /dev/null -w '%{http_code}' "$U$bad")
  check "GET $bad" "$c" 404
done

# a month without data says there is nothing to judge yet, not "达标 0 个"
old_month=$(date -d "$(date +%Y-%m-15) -45 days" +%Y-%m)
out=$("$BIN/sitectl" report --month "$old_month") || fail "sitectl report --month $old_month"
printf '%s' "$out" | grep -q '尚无完整窗口，不能判定达标情况' || fail "an empty month's noise: $out"
printf '%s' "$out" | grep -q '达标 0 个' && fail "an empty month counts 0 compliant: $out"
# loss rates to two decimals, as the dashboard and the report show them
"$BIN/sitectl" materials summary | grep -Eq '[0-9]+\.[0-9]{2}%' ||
  fail "loss rates to two decimals: $("$BIN/sitectl" materials summary)"

# ---- sitectl in Chinese says nothing in English: every command's output,
# once the ids (crane-01, 230100-HRB-0001), the site's own names (its
# groups), the units and the standards' abbreviations are set aside
curl -sf "$SITECTL_URL/api/equipment" | json '"\n".join(g["name"] for g in j["groups"])' >"$T/own"
echo "test" >>"$T/own" # the person who overrode crane-02 above
for words in "status" "readings dust-01 pm10 --since -10m" "readings noise-01 la --step 1m" \
  "alarms" "alarms --all" "noise" "dust" "waste summary" "waste tickets" "waste verify" \
  "materials summary" "site progress" "equipment" "equipment log" "energy" "carbon" "uplink" \
  "report --month $MONTH" "waste help" "machines"; do
  # shellcheck disable=SC2086
  "$BIN/sitectl" $words >"$T/zh.txt" 2>&1 || fail "sitectl $words exited $?: $(tail -3 "$T/zh.txt")"
  $PY - "$T/zh.txt" "$T/own" "$words" <<'PY' || fail "English in sitectl $words"
import re, sys
text = open(sys.argv[1], encoding='utf-8').read()
for name in open(sys.argv[2], encoding='utf-8').read().split('\n'):
    if name:
        text = text.replace(name, ' ')
if sys.argv[3] == 'waste help':  # a command's syntax, what a person types
    text = '\n'.join(l.split('  ')[-1] for l in text.split('\n') if not l.startswith('sitectl'))
    text = re.sub(r'[a-z_]+=[^ \]]*', ' ', text)
text = re.sub(r'[A-Za-z0-9.]+(?:-[A-Za-z0-9.]+)+', ' ', text)     # ids, dates
text = re.sub(r'sitectl( [a-z]+)*', ' ', text)                  # a command to type
text = re.sub(r'--[a-z-]+', ' ', text)                          # its options
text = re.sub(r'\b(?:kWh|kW|dB|LAeq|Lmax|CO₂|µg/m³|TLS|MN|QN|CN|sitegated|sitectl|SITECTL_TOKEN'
              r'|Seq|csv|--[a-z-]+)\b', ' ', text)
text = re.sub(r'\[[a-z_]+\]( [a-z_]+)?', ' ', text)
text = re.sub(r'(waste|tickets|verify|summary|progress|import|alarms|equipment|log|set|report)', ' ', text) if sys.argv[3].startswith(('waste help',)) else text
bad = re.findall(r'\b[a-z_]{3,}\b', text)
# table names for --csv are the report's keys
if sys.argv[3].startswith('report'):
    bad = [w for w in bad if not re.match(r'^(noise|dust|alarms|waste|materials|energy|carbon|machinery)(_[a-z]+)*$', w)]
if bad:
    print(sys.argv[3], sorted(set(bad))[:20])
    sys.exit(1)
PY
done

# ---- sitectl when the gateway is not running; a LAN bind without a token
stop_gw
rc=0
out=$("$BIN/sitectl" report 2>&1) || rc=$?
check "sitectl exit without a gateway" "$rc" 3
printf '%s' "$out" | grep -q 'sitegated 是否在运行' || fail "sitectl's message: $out"
# curl's reason in the catalogue's words too: no English but the URL and
# the program names
printf '%s' "$out" | grep -q '（连接被拒绝）' || fail "sitectl's reason: $out"
printf '%s' "$out" | sed -e 's|http://[^（]*||' -e 's/sitegated//; s/sitectl//' | grep -q '[A-Za-z]' &&
  fail "English in sitectl's Chinese message: $out"
sed -e "s|^listen = 127.0.0.1:$HTTP_PORT|listen = 0.0.0.0:$HTTP_PORT|" -e "s|^token = .*||" \
  "$T/demo.conf" >"$T/lan.conf"
rc=0
"$BIN/sitegated" -c "$T/lan.conf" >"$T/lan.log" 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q 'set \[http\] token first' "$T/lan.log" || fail "a LAN bind without a token started"
echo "api: every endpoint answered as expected"
