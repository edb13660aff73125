#!/bin/bash
# Reads over a month (issue 15: no slower than the row layout): sitegated
# with the demo site (deploy/sitegate.conf, ports and database moved) fed
# its last MONTH_DAYS days (30) by `sitesim --history` at MONTH_SPEED times
# real time, then the median of MONTH_RUNS (5) wall times of
#   sitectl readings dust-01 pm10 --since -30d --step 1m   (minute rollups)
#   sitectl readings dust-01 pm10 --since -30d             (raw: blocks and tail)
#   sitectl report --month <this month>                    (the month's report)
# Run it with SITEGATE_BIN at another build for the baseline. Prints its
# figures and one `bench: step1m_30d_ms=... raw_30d_ms=... report_month_ms=...`
# line; never fails the build.
set -eu
BENCH=month; . "$(dirname "$0")/lib.sh"
DAYS=${MONTH_DAYS:-30}
SPEED=${MONTH_SPEED:-20000}
RUNS=${MONTH_RUNS:-5}

demo_conf month
"$BIN/sitegated" -c "$T/month.conf" 2>"$T/gw.log" & GW=$!; PIDS="$PIDS $GW"
wait_for 30 "sitegated answering" gw_up
t0=$(date +%s)
"$BIN/sitesim" -c "$T/month.conf" --speed "$SPEED" --history "${DAYS}d" --ignore 0 >"$T/sim.log" 2>&1 & SIM=$!
PIDS="$PIDS $SIM"
caught_up() { # a dust reading from the last few minutes
  "$BIN/sitectl" -u "http://127.0.0.1:$PH" readings dust-01 pm10 --since -3m --json 2>/dev/null |
    grep -q '"t"'
}
wait_for 600 "sitesim's history caught up" caught_up
kill "$SIM" 2>/dev/null || true
wait_for 60 "the queue committed" drained
rows=$(status raw_readings)
echo "a month of the demo site: $rows readings in $(($(date +%s) - t0)) s"
median_ms() { # median_ms CMD...: the median wall time of RUNS runs, ms
  for _ in $(seq "$RUNS"); do
    a=$(date +%s%N); "$@" >/dev/null 2>&1 || true; b=$(date +%s%N)
    echo $(((b - a) / 1000000))
  done | sort -n | sed -n "$(((RUNS + 1) / 2))p"
}
ctl() { SITECTL_TOKEN=bench-$$ "$BIN/sitectl" -u "http://127.0.0.1:$PH" "$@"; }
step=$(median_ms ctl readings dust-01 pm10 --since -30d --step 1m)
raw=$(median_ms ctl readings dust-01 pm10 --since -30d)
rep=$(median_ms ctl report --month "$(date -u +%Y-%m)")
echo "  readings --step 1m over 30 days: $step ms; raw over 30 days: $raw ms; month report: $rep ms"
echo "bench: step1m_30d_ms=$step raw_30d_ms=$raw report_month_ms=$rep"
