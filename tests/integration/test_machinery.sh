#!/bin/bash
# Non-road mobile machinery (issue 17) through CoAP and sitectl: a machine
# is registered (sitectl, with the token, audited), enters through a gate
# reader's POST /g (a separate response; a resend is stored once, a reused
# number with other content is 4.09), breaks the zone's stage rule
# (machinery.stage), an unregistered one comes in by hand
# (machinery.unregistered), the terminal's smoke reading over /r breaks the
# smoke limit (machinery.smoke); the register is corrected, the machines
# leave and every alarm clears; a restart keeps the register, its audit,
# the moves and the day's figures; the uplink carries the register's
# changes, the moves and a day's figures to sitegate-rx as signed records.
. "$(dirname "$0")/lib.sh"
# This test reads sitectl's English (lib.sh makes it speak Chinese).
export SITECTL_LANG=en

CTL="$BIN/sitectl"
export SITECTL_TOKEN=test-token SITECTL_USER=tester
CODE=230102Z0001

write_conf "$T/site.conf" <<CONF
[http]
token = test-token

[device gate-01]
type = gate
insecure = yes

[device mt-01]
type = machine
interval_s = 10
insecure = yes

[machinery]
min_stage = III
opacity_limit_per_m = 0.8
CONF
start_gw "$T/site.conf"

m_is() { # m_is CODE PYEXPR-over-m
  "$CTL" machines --json | "$PY" -c '
import json, sys
ms = [m for m in json.load(sys.stdin) if m["code"] == sys.argv[1]]
sys.exit(0 if ms and eval(sys.argv[2], {"m": ms[0]}) else 1)' "$1" "$2"
}
alarm_active() { # alarm_active RULE SOURCE
  "$CTL" alarms --json | json "any(a['rule'] == '$1' and a['source'] == '$2' for a in j['alarms'])" |
    grep -qx True
}
no_alarm() { ! alarm_active "$1" "$2"; }
diagnose() {
  "$CTL" machines || true
  "$CTL" alarms || true
}

# g CT -e PAYLOAD | g CT -f FILE: POST /g; the final code and payload.
g() {
  ct=$1
  shift
  coap-client-openssl -B 15 -v 7 -m post -t "$ct" "$@" "coap://127.0.0.1:$COAP_PORT/g" \
    >"$T/g.out" 2>&1 || true
  code=$(grep -o ' c:[2-5]\.[0-9][0-9]' "$T/g.out" | head -1 | cut -d: -f2)
  echo "${code:-none}"
}
event() { # event NO DIR T [CODE]
  printf '{"gate":"gate-01","no":%s,"t":%s,"code":"%s","dir":"%s"}' "$1" "$3" "${4:-$CODE}" "$2"
}

# 1. The register: the token is needed, and the change is audited.
rc=0
SITECTL_TOKEN= "$CTL" machine add $CODE --type excavator --stage II --power-kw 103 \
  2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q token "$T/err" || fail "adding needs the token: rc=$rc $(cat "$T/err")"
"$CTL" machine add $CODE --type excavator --stage II --power-kw 103 --owner 龙运租赁 \
  --label yellow --terminal mt-01 --reason "arrived for the pit" >/dev/null ||
  fail "sitectl machine add"
rc=0
"$CTL" machine add $CODE --type excavator --stage II --power-kw 103 2>"$T/err" || rc=$?
[ $rc -eq 1 ] || fail "a code twice is refused: rc=$rc"
m_is $CODE 'm["stage"] == "II" and m["power_kw"] == 103 and not m["on_site"] and m["compliant"]' ||
  fail "registered, not on site: $("$CTL" machines --json)"
"$CTL" machines --json | "$PY" -c '
import json, sys
m = json.load(sys.stdin)[0]
for k in ("code", "type", "stage", "power_kw", "on_site", "compliant", "reasons", "hours_today", "fuel_l_today"):
    assert k in m, k' || fail "sitectl machines --json lacks a field"

# 2. The gate: an empty ACK, then 2.01; a resend 2.04; the number reused 4.09.
now=$(now_s)
r=$(g 50 -e "$(event 1 in $((now - 60)))")
grep -q 'ACK c:0.00' "$T/g.out" || fail "no empty ACK (separate response): $(cat "$T/g.out")"
[ "$r" = 2.01 ] || fail "gate entry: wanted 2.01, got $r: $(cat "$T/g.out")"
r=$(g 50 -e "$(event 1 in $((now - 60)))")
[ "$r" = 2.04 ] || fail "gate resend: wanted 2.04, got $r"
r=$(g 50 -e "$(event 1 out $((now - 60)))")
[ "$r" = 4.09 ] || fail "gate number reused: wanted 4.09, got $r"
r=$(g 50 -e '{"gate":"gate-01","no":2,"t":1,"code":"x","dir":"in"}')
[ "$r" = 4.00 ] || fail "a bad event: wanted 4.00, got $r"
r=$(g 50 -e "$(printf '{"gate":"mt-01","no":1,"t":%s,"code":"%s","dir":"in"}' "$now" $CODE)")
[ "$r" = 4.03 ] || fail "a terminal is not a gate: wanted 4.03, got $r"

# 3. On site below the zone's stage: machinery.stage.
wait_for 10 "machinery.stage for $CODE" alarm_active machinery.stage $CODE
m_is $CODE 'm["on_site"] and not m["compliant"] and m["reasons"] == ["stage"]' ||
  fail "on site, not compliant: $("$CTL" machines --json)"

# 4. An unregistered machine comes in by hand: machinery.unregistered.
"$CTL" machine enter HLJ-0099 >/dev/null || fail "sitectl machine enter"
wait_for 10 "machinery.unregistered for HLJ-0099" alarm_active machinery.unregistered HLJ-0099
m_is HLJ-0099 'not m["registered"] and m["on_site"] and m["reasons"] == ["unregistered"]' ||
  fail "unregistered on site: $("$CTL" machines --json)"

# 5. The terminal: engine hours, fuel and smoke over /r (SenML CBOR too).
pack=$(printf '[{"bn":"mt-01/","bt":%s,"n":"engine_h","u":"h","v":1000},{"n":"idle_h","v":200},{"n":"fuel","u":"l","v":5000}]' "$((now - 30))")
r=$(coap post /r 110 "$pack")
expect_code 2.04 "$r" "terminal's first pack"
pack=$(printf '[{"bn":"mt-01/","bt":%s,"n":"engine_h","u":"min","v":60030},{"n":"idle_h","v":200.125},{"n":"fuel","v":5012},{"n":"opacity","u":"m-1","v":1.2}]' "$((now - 20))")
r=$(coap post /r 110 "$pack")
expect_code 2.04 "$r" "terminal's smoke"
wait_for 10 "machinery.smoke for $CODE" alarm_active machinery.smoke $CODE
m_is $CODE 'm["working"] and sorted(m["reasons"]) == ["smoke", "stage"] and abs(m["fuel_l_today"] - 12) < 1e-6 and abs(m["engine_h_today"] - 0.5) < 1e-6' ||
  fail "smoking, 12 l and 0.5 h today: $("$CTL" machines --json)"

# 6. Corrected: the stage alarm clears while the machine stays.
rc=0
"$CTL" machine change $CODE --stage IV 2>"$T/err" || rc=$?
[ $rc -eq 2 ] || fail "a change without a reason is refused: rc=$rc"
"$CTL" machine change $CODE --stage IV --reason "engine replaced, certificate 2026-118" >/dev/null ||
  fail "sitectl machine change"
wait_for 10 "machinery.stage for $CODE to clear" no_alarm machinery.stage $CODE
alarm_active machinery.smoke $CODE || fail "the smoke alarm stays while it smokes on site"

# 7. They leave (the gate, in CBOR; a person): every alarm clears.
"$PY" - "$T/out.cbor" "$now" "$CODE" <<'PYEOF'
import struct, sys
def text(s):
    b = s.encode()
    return bytes([0x60 | len(b)]) + b
t = int(sys.argv[2])
body = bytes([0xa5]) + text("gate") + text("gate-01") + text("no") + bytes([0x02]) + \
    text("t") + b"\x1a" + struct.pack(">I", t) + text("code") + text(sys.argv[3]) + \
    text("dir") + text("out")
open(sys.argv[1], "wb").write(body)
PYEOF
r=$(g 60 -f "$T/out.cbor")
[ "$r" = 2.01 ] || fail "gate exit in CBOR: wanted 2.01, got $r: $(cat "$T/g.out")"
"$CTL" machine leave HLJ-0099 >/dev/null || fail "sitectl machine leave"
wait_for 10 "machinery.smoke for $CODE to clear" no_alarm machinery.smoke $CODE
wait_for 10 "machinery.unregistered for HLJ-0099 to clear" no_alarm machinery.unregistered HLJ-0099
m_is $CODE 'not m["on_site"] and m["compliant"]' || fail "gone: $("$CTL" machines --json)"

# 8. The site's carbon counts the machine's 12 l once, with the diesel factor.
curl -sf "$SITECTL_URL/api/carbon" | json 'abs(j["machinery"]["t_co2"] - 12 * 2.63 / 1000) < 1e-9 and abs(j["site_t_co2"] - j["period"]["t_co2"] - j["machinery"]["t_co2"]) < 1e-9' |
  grep -qx True || fail "machinery in /api/carbon: $(curl -sf "$SITECTL_URL/api/carbon")"

# 9. Import from CSV (all or nothing, every bad line named); retire.
printf 'code,type,stage,power_kw,fuel,owner\nHLJ-0100,loader,IV,75,diesel,自有\nHLJ-0101,crane,electric,55,,\n' >"$T/reg.csv"
"$CTL" machine import "$T/reg.csv" | grep -q "2 added" || fail "sitectl machine import"
printf 'code,type,stage,power_kw\nHLJ-0102,loader,V,75\nHLJ-0103,loader,III,x\n' >"$T/bad.csv"
rc=0
"$CTL" machine import "$T/bad.csv" 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q "line 2" "$T/err" && grep -q "line 3" "$T/err" ||
  fail "a bad CSV names its lines: rc=$rc $(cat "$T/err")"
# a file sitectl cannot read: the system's reason in Chinese too
rc=0
SITECTL_LANG=zh "$CTL" machine import "$T/nope.csv" 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q '无法读取 .*nope.csv：找不到' "$T/err" || fail "an unreadable file in Chinese: rc=$rc $(cat "$T/err")"
# in Chinese: every bad line in the catalogue's words, no English but the
# codes the person typed; the JSON keeps the English for scripts
printf 'code,type,stage,power_kw\nHLJ-0104,loader,III,-5\nHLJ-0105,loader,III,60\nHLJ-0105,loader,III,60\n' >"$T/bad-zh.csv"
rc=0
SITECTL_LANG=zh "$CTL" machine import "$T/bad-zh.csv" 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q '第 2 行：功率应大于 0 且不超过 10000 千瓦' "$T/err" &&
  grep -q '第 4 行：机械 HLJ-0105 重复列出' "$T/err" ||
  fail "a bad CSV in Chinese: rc=$rc $(cat "$T/err")"
sed 's/HLJ-010[45]//g; s/sitectl//g' "$T/err" | grep -q '[A-Za-z]' && fail "English in the Chinese CSV refusal: $(cat "$T/err")"
$PY -c 'import json,sys; print(json.dumps({"csv": open(sys.argv[1]).read(), "by": "t", "reason": "r"}))' "$T/bad-zh.csv" |
  curl -s -X POST -H "Authorization: Bearer $SITECTL_TOKEN" -H 'Content-Type: application/json' \
    --data-binary @- "$SITECTL_URL/api/machinery/import" |
  json 'j["code"] == "machine_power" and j["line"] == 2 and [(l["line"], l["code"]) for l in j["lines"]] == [(2, "machine_power"), (4, "mcsv_twice")] and j["lines"][1]["args"] == ["HLJ-0105"] and j["more"] == 0 and "line 4: machine HLJ-0105 is listed twice" in j["error"]' |
  grep -qx True || fail "the CSV refusal's lines in the JSON"
m_is HLJ-0101 'm["stage"] == "electric" and m["fuel"] == "electric"' || fail "imported"
"$CTL" machine retire HLJ-0100 --reason "returned to the lessor" >/dev/null || fail "retire"
"$CTL" machines --json | json '[m["code"] for m in j]' | grep -q HLJ-0100 &&
  fail "a retired machine is not in the register"

# 10. A restart keeps the register, the audit, the moves and the figures.
stop_gw
start_gw "$T/site.conf"
m_is $CODE 'm["stage"] == "IV" and not m["on_site"] and m["owner"] == "龙运租赁" and abs(m["fuel_l_today"] - 12) < 1e-6' ||
  fail "after the restart: $("$CTL" machines --json)"
"$CTL" --json machine show $CODE | "$PY" -c '
import json, sys
m = json.load(sys.stdin)
acts = [(a["action"], a["by"]) for a in m["audit"]]
assert acts == [("change", "tester"), ("add", "tester")], acts
assert [x["dir"] for x in m["moves"]] == ["in", "out"], m["moves"]
d = m["days"][-1]
assert abs(d["t_co2"] - 12 * 2.63 / 1000) < 1e-9, d
assert d["nox_kg"] > 0 and d["pm_kg"] > 0, d
assert abs(d["idle_share"] - 0.25) < 1e-9, d
' || fail "sitectl machine show after the restart: $("$CTL" --json machine show $CODE)"
"$CTL" machine show $CODE >"$T/show.txt"
grep -q "engine replaced" "$T/show.txt" || fail "the audit's reason is shown: $(cat "$T/show.txt")"
# the register's fields, the audit's too, in Chinese: stage IV is 国四,
# no identifier (IV, diesel, gate but the gate's own name) shows
SITECTL_LANG=zh "$CTL" machine show $CODE >"$T/show-zh.txt"
[ "$(grep -c "排放阶段 国四，103.0 kW，柴油" "$T/show-zh.txt")" = 2 ] && grep -q "^      excavator 排放阶段 国二.*标牌 黄色" "$T/show-zh.txt" ||
  fail "the register and its audit in Chinese: $(cat "$T/show-zh.txt")"
! grep -qE "\bIV\b|diesel|[^(]gate" "$T/show-zh.txt" ||
  fail "identifiers in sitectl machine show: $(cat "$T/show-zh.txt")"
"$CTL" --json machine show $CODE | json 'j["audit"][0]["machine"]["stage"] == "IV" and j["audit"][0]["machine"]["owner"] == "龙运租赁"' |
  grep -qx True || fail "the audit's machine: $("$CTL" --json machine show $CODE)"
# the monthly report's machinery part: this machine's 12 l, as CSV too
MONTH=$(TZ=Asia/Shanghai date +%Y-%m)
curl -sf "$SITECTL_URL/api/report?month=$MONTH" | json '[r for t in j["tables"] if t["name"] == "machinery" for r in t["rows"] if r[0] == "'$CODE'"][0][7]' |
  grep -qx 12.0 || fail "report machinery row: $(curl -sf "$SITECTL_URL/api/report?month=$MONTH")"
curl -sf "$SITECTL_URL/api/report?month=$MONTH&format=csv&table=machinery" | grep -q "^$CODE," ||
  fail "report machinery CSV"
no_alarm machinery.stage $CODE && no_alarm machinery.smoke $CODE &&
  no_alarm machinery.unregistered HLJ-0099 || fail "no machinery alarm after the restart"
# Yesterday a machine not in the register was on site 10:00-12:00 (the
# uplink's 6053 for yesterday, below).
YDAY=$(TZ=Asia/Shanghai date -d 'yesterday 00:00' +%s)
[ "$(g 50 -e "$(event 900 in $((YDAY + 36000)) YDAY-1)")" = 2.01 ] || fail "yesterday's entry: $(cat "$T/g.out")"
[ "$(g 50 -e "$(event 901 out $((YDAY + 43200)) YDAY-1)")" = 2.01 ] || fail "yesterday's exit: $(cat "$T/g.out")"
stop_gw

# 11. The uplink carries the register's changes (6051), the entries and
# exits (6052) and yesterday's figures (6053) as signed records of the one
# chain, the row as it was after each change, and sitegate-rx stores them
# chained.
. "$(dirname "$0")/pg.sh"
. "$(dirname "$0")/uplink_lib.sh"
RX_DB=sqlite rx_backend
MN=TEST-SITE-01
RX_PORT=$(free_port tcp)
make_pki "$T/pki" "$MN"
"$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --ca "$T/pki/ca.crt" --cert "$T/pki/server.crt" \
  --key "$T/pki/server.key" --db "$RX_TARGET" >>"$T/rx.log" 2>&1 &
PIDS="$PIDS $!"
wait_for 30 "sitegate-rx listening" grep -q "listening on" "$T/rx.log"
cat >>"$T/site.conf" <<CONF

[uplink]
host = 127.0.0.1
port = $RX_PORT
server_name = localhost
ca = $T/pki/ca.crt
cert = $T/pki/gateway-$MN.crt
key = $T/pki/gateway-$MN.key
lag_s = 1
CONF
# the machinery's days from yesterday on (a first start begins with today)
sqlite3 "$T/sitegate.db" "INSERT OR REPLACE INTO outbox_state(name, value) VALUES('next_mach_day', $YDAY)"
start_gw "$T/site.conf"
up_wait 60 "every signed record acknowledged" 'j["connected"] and j["chain_seq"] > 0 and j["backlog"]["signed"] == 0'
"$BIN/sitegate-rx" export --db "$RX_TARGET" --site "$MN" --since 0000000000 --json >"$T/export.json"
"$PY" - "$T/export.json" "$CODE" <<'PY' || fail "the machinery records as the receiver stored them: $(grep -c . "$T/export.json") rows"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
code = sys.argv[2]
reg = [r["records"] for r in rows if r["cn"] == "6051" and r["records"][0]["Code"] == code]
assert all(r["ledger_state"] == "chained" for r in rows if r["cn"] in ("6051", "6052")), rows
assert [r[0]["Action"] for r in reg] == ["add", "change"], reg
assert reg[0][0]["Stage"] == "II" and reg[1][0]["Stage"] == "IV", reg
by = {k: v for r in reg[1] for k, v in r.items()}
assert by["Owner"] == "龙运租赁" and by["By"] == "tester" and by["Reason"].startswith("engine replaced%2C"), by
mv = [r["records"][0] for r in rows if r["cn"] == "6052" and r["records"][0]["Code"] == code]
assert [m["Dir"] for m in mv] == ["in", "out"], mv
assert mv[0]["Source"] == "gate" and mv[0]["Gate"] == "gate-01", mv
# yesterday's machinery (6053): the visitor's 2 hours, through machinery_days()
day = [r["records"] for r in rows if r["cn"] == "6053"]
assert len(day) == 1 and day[0][0]["Machines"] == "1", day
assert day[0][1] == {"Code": "YDAY-1", "Registered": "0", "OnsiteH": "2.00", "Co2Kg": "0.0",
                     "NoxKg": "0.000", "PmKg": "0.0000"}, day
PY
# ... and decoded into its tables (protocol/RX-SCHEMA.md), beside the frames
got=$(rx_sql "SELECT action, stage FROM rx_machinery_register WHERE code='$CODE' ORDER BY seq")
[ "$got" = "$(printf 'add|II\nchange|IV')" ] || fail "rx_machinery_register: $got"
got=$(rx_sql "SELECT owner, changed_by FROM rx_machinery_register WHERE code='$CODE' AND action='change'")
[ "$got" = "龙运租赁|tester" ] || fail "rx_machinery_register's free text: $got"
got=$(rx_sql "SELECT m.dir, m.source, m.gate, l.state FROM rx_machinery_moves m JOIN ledger l USING (mn, seq) WHERE m.code='$CODE' ORDER BY m.seq")
[ "$got" = "$(printf 'in|gate|gate-01|chained\nout|gate|gate-01|chained')" ] || fail "rx_machinery_moves: $got"
got=$(rx_sql "SELECT d.machines, m.code, m.registered, m.onsite_h, m.engine_h IS NULL FROM rx_machinery_day d JOIN rx_machinery_day_machine m USING (mn, seq)")
[ "$got" = "1|YDAY-1|0|2.0|1" ] || fail "rx_machinery_day and its machine: $got"
stop_gw
echo "ok: machinery register, gate, rule, alarms, restart, uplink"
