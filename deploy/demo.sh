#!/bin/sh
# `make demo`: runs sitegated on the demo site (deploy/sitegate.conf, with its
# database under ./demo/) and sitesim feeding it, until Ctrl-C. The uplink
# goes to a local sitegate-rx (the authority's receiver, database
# demo/rx.db) with a PKI that deploy/pki makes in demo/pki on the first run.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/bin"
dir="$top/demo"
mkdir -p "$dir"
# The demo's copy gets a token, so actions (sitectl waste add, site progress,
# materials import, alarm ack) work with SITECTL_TOKEN=demo-token.
sed -e "s|^path = .*|path = $dir/sitegate.db|" -e "s|^# token = .*|token = demo-token|" \
  "$top/deploy/sitegate.conf" > "$dir/sitegate.conf"
site=$(sed -n 's/^id = //p' "$dir/sitegate.conf" | head -1)
pki="$dir/pki"
rx_port=${DEMO_RX_PORT:-9212}
"$top/deploy/pki/make-ca.sh" "$pki" >/dev/null
"$top/deploy/pki/make-server.sh" "$pki" localhost >/dev/null
"$top/deploy/pki/make-gateway.sh" "$pki" "$site" >/dev/null
cat >>"$dir/sitegate.conf" <<CONF

[uplink]
host = 127.0.0.1
port = $rx_port
server_name = localhost
ca = $pki/ca.crt
cert = $pki/gateway-$site.crt
key = $pki/gateway-$site.key
rtd_interval_s = 30
CONF
"$bin/sitegated" --check-config -c "$dir/sitegate.conf" >/dev/null

"$bin/sitegate-rx" --listen "127.0.0.1:$rx_port" --ca "$pki/ca.crt" --cert "$pki/server.crt" \
  --key "$pki/server.key" --db "$dir/rx.db" 2>"$dir/sitegate-rx.log" &
rx=$!
"$bin/sitegated" -c "$dir/sitegate.conf" 2>"$dir/sitegated.log" &
gw=$!
sim=""
acker=""
stop() {
  trap - INT TERM EXIT
  [ -n "$acker" ] && kill "$acker" 2>/dev/null
  [ -n "$sim" ] && kill "$sim" 2>/dev/null
  kill "$gw" 2>/dev/null
  kill "$rx" 2>/dev/null
  wait 2>/dev/null
  echo "demo stopped; data kept in $dir"
}
# Ctrl-C is how a person ends the demo: a clean stop, not an error for make.
trap stop EXIT
trap "exit 0" INT TERM

# Wait for the API, then start the simulated site.
i=0
until "$bin/sitectl" status >/dev/null 2>&1; do
  i=$((i + 1))
  if [ $i -gt 50 ] || ! kill -0 "$gw" 2>/dev/null; then
    echo "sitegated did not start:" >&2
    cat "$dir/sitegated.log" >&2
    exit 1
  fi
  sleep 0.2
done
# The demo's bill of quantities, for the material loss rates.
SITECTL_TOKEN=demo-token "$bin/sitectl" materials import "$top/deploy/boq-demo.csv" >/dev/null || true
# The demo's machinery register; sitesim runs its terminals and gate, the
# pump's engine worn (it smokes), the rig below the zone's stage.
SITECTL_TOKEN=demo-token "$bin/sitectl" --by 项目部 --reason 机械台账导入 \
  machine import "$top/deploy/machines-demo.csv" >/dev/null || true
# The site's last 48 hours first (its sensors' readings through CoAP, at
# 2880 times real time: about a minute), then live: the charts, the limit
# lines and `sitectl dust` have data at the first look. A restarted demo
# fills its gap the same way (the same seed gives the same readings, which
# the gateway keeps once).
"$bin/sitesim" -c "$dir/sitegate.conf" --speed 2880 --history 48h \
  --machines "$top/deploy/machines-demo.csv" --smoky 23010100000104 2>"$dir/sitesim.log" &
sim=$!
# The history ends with dust-01 in an episode since 90 minutes (sitesim's
# story), its alarm raised back then: the person on duty acknowledges it
# once the history has caught up, through the API like anyone.
(
  i=0
  until "$bin/sitectl" readings dust-01 pm10 --since -3m --json 2>/dev/null | grep -q '"v"'; do
    i=$((i + 1))
    [ $i -gt 600 ] && exit 0
    sleep 1
  done
  i=0
  while [ $i -lt 60 ]; do
    id=$(curl -sf http://127.0.0.1:8080/api/alarms |
      sed -n 's/.*"id":\([0-9]*\),"rule":"dust.pm10_long","source":"dust-01".*/\1/p')
    if [ -n "$id" ]; then
      SITECTL_TOKEN=demo-token "$bin/sitectl" alarm ack "$id" --by 值班员 --note 已开启雾炮并洒水降尘 >/dev/null
      exit 0
    fi
    i=$((i + 1))
    sleep 1
  done
) 2>/dev/null &
acker=$!

cat <<MSG

sitegate demo is running (site 230100-HRB-0001, simulated sensors).
  dashboard    http://127.0.0.1:8080/          (actions ask for the token: demo-token)
  site office  http://127.0.0.1:8080/#/screen  (the big screen: full screen, no token)
  API          http://127.0.0.1:8080/api/status
  status       bin/sitectl status
  readings     bin/sitectl readings dust-01 pm10 --since -10m
               bin/sitectl readings noise-01 la --step 1m
  history      the last 48 hours arrive in the first minute (sitesim --history 48h),
               with their alarms: bin/sitectl alarms --all --since -2d
  waste        bin/sitectl waste summary     (the weighbridge uploads its past tickets,
               bin/sitectl waste tickets --csv  newest first, in the first minutes)
               bin/sitectl waste disclosure  bin/sitectl materials summary
  equipment    bin/sitectl equipment       (cap, idle-off, schedule; fog-01 vs dust and frost)
               bin/sitectl equipment log   bin/sitectl energy   bin/sitectl carbon
  actions      SITECTL_TOKEN=demo-token bin/sitectl site progress 0.45
               SITECTL_TOKEN=demo-token bin/sitectl equipment set crane-02 off --for 1h --reason test
  uplink       bin/sitectl uplink            (HJ 212 over TLS to the local sitegate-rx)
  machinery    bin/sitectl machines      (the rig is stage II, the pump smokes: two alarms)
               bin/sitectl machine show 23010100000104
  report       bin/sitectl report --out demo/report.html   (the month's site report, to print)
  metrics      curl http://127.0.0.1:8080/metrics            (Prometheus)
  authority    bin/sitegate-rx sites --db $dir/rx.db
               bin/sitegate-rx export --db $dir/rx.db --site $site --since -10m
  logs         $dir/sitegated.log, $dir/sitesim.log, $dir/sitegate-rx.log
Press Ctrl-C to stop.

MSG
sleep 15
"$bin/sitectl" status || true
echo
"$bin/sitectl" uplink || true
wait "$gw"
