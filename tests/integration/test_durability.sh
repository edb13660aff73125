# What a 2.04 promises (README "What an acknowledgement promises"):
# SIGTERM loses nothing acknowledged; kill -9 loses at most what was
# acknowledged in the last batch window; the database is intact after both.
. "$(dirname "$0")/lib.sh"
BATCH_MS=${DURABILITY_BATCH_MS:-50} # test_durability_window.sh: the default window
# A reading is committed at most one batch window after its ack, plus the
# commit itself (an fsync: milliseconds on an idle disk, up to seconds on a
# disk shared with heavy writers), which COMMIT_MS allows for.
COMMIT_MS=500
write_conf "$T/site.conf" </dev/null
BASE=$(( $(now_s) - 7200 ))

# sender FROM FILE: posts one pack per reading (pm10 = i at BASE + i) until
# stopped, appending "i ack_time_ns" to FILE for every 2.04. Each post waits
# for its answer: coap-client paces the sender, no sleep needed.
sender() {
  i=$1
  while :; do
    r=$(coap-client-openssl -B 1 -v 7 -m post -t 110 \
      -e "[{\"bn\":\"dust-01/\",\"bt\":$((BASE + i)),\"n\":\"pm10\",\"v\":$i}]" \
      "coap://127.0.0.1:$COAP_PORT/r" 2>&1 | grep -o 'ACK c:[0-9.]*' | tail -1)
    [ "$r" = "ACK c:2.04" ] && echo "$i $(date +%s%N)" >>"$2"
    i=$((i + 1))
  done
}

# stored_values FILE: the pm10 values stored for dust-01, one per line, sorted.
stored_values() {
  "$BIN/sitectl" readings dust-01 pm10 --since "$BASE" --until "$((BASE + 7200))" --json >"$T/r.json" ||
    fail "sitectl readings after the restart"
  json '"\n".join(str(int(p["v"])) for p in j["points"])' <"$T/r.json" | sort >"$1"
}

# acks_at_least FILE N: true once the sender has N acknowledgements in FILE.
acks_at_least() {
  alive "$S" "the sender"
  [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]
}

# acks_older_at_least FILE N: true once N acknowledgements in FILE are older
# than a batch window plus a commit: enough for the kill -9 check to judge.
acks_older_at_least() {
  alive "$S" "the sender"
  [ -f "$1" ] || return 1
  [ "$(awk -v k="$(date +%s%N)" -v w=$(((BATCH_MS + COMMIT_MS) * 1000000)) '$2 < k - w' "$1" | wc -l)" -ge "$2" ]
}

# 1. SIGTERM while packs arrive: every acknowledged pack is stored.
start_gw "$T/site.conf"
sender 0 "$T/acked1" & S=$!
PIDS="$PIDS $S"
wait_for 60 "20 packs acknowledged before SIGTERM" acks_at_least "$T/acked1" 20
kill -TERM "$GW_PID"
rc=0; wait "$GW_PID" || rc=$?
kill "$S" 2>/dev/null; wait "$S" 2>/dev/null || true
[ $rc -eq 0 ] || fail "SIGTERM exit status $rc"
n1=$(wc -l <"$T/acked1")
[ "$n1" -gt 10 ] || fail "only $n1 packs acknowledged before SIGTERM"
[ "$(sqlite3 "$T/sitegate.db" 'PRAGMA integrity_check')" = ok ] || fail "integrity after SIGTERM"
start_gw "$T/site.conf"
stored_values "$T/stored1"
missing=$(cut -d' ' -f1 "$T/acked1" | sort | comm -23 - "$T/stored1" | head -5)
[ -z "$missing" ] || fail "acknowledged before SIGTERM but not stored: $missing"

# 2. kill -9 while packs arrive: everything acknowledged more than one batch
# window before the kill is stored, and the database is intact.
sender 3000 "$T/acked2" & S=$!
PIDS="$PIDS $S"
wait_for 60 "20 packs acknowledged more than $((BATCH_MS + COMMIT_MS)) ms ago before kill -9" \
  acks_older_at_least "$T/acked2" 20
kill_ns=$(date +%s%N)
kill -9 "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
kill "$S" 2>/dev/null; wait "$S" 2>/dev/null || true
n2=$(wc -l <"$T/acked2")
[ "$n2" -gt 10 ] || fail "only $n2 packs acknowledged before kill -9"
[ "$(sqlite3 "$T/sitegate.db" 'PRAGMA integrity_check')" = ok ] || fail "integrity after kill -9"
start_gw "$T/site.conf"
stored_values "$T/stored2"
awk -v k="$kill_ns" -v w=$(((BATCH_MS + COMMIT_MS) * 1000000)) '$2 < k - w { print $1 }' \
  "$T/acked2" | sort >"$T/must"
[ "$(wc -l <"$T/must")" -gt 5 ] || fail "too few packs to judge"
missing=$(comm -23 "$T/must" "$T/stored2" | head -5)
[ -z "$missing" ] || fail "acknowledged >$((BATCH_MS + COMMIT_MS)) ms before kill -9 but lost: $missing"
cut -d' ' -f1 "$T/acked2" | sort | comm -23 - "$T/stored2" >"$T/lost"
oldest=$(awk -v k="$kill_ns" 'NR == FNR { lost[$1] = 1; next } ($1 in lost) { a = (k - $2) / 1e6; if (a > m) m = a } END { printf "%.0f", m }' "$T/lost" "$T/acked2")
echo "kill -9: $n2 acknowledged, $(wc -l <"$T/lost") lost, the oldest acknowledged ${oldest} ms before the kill"
stop_gw
