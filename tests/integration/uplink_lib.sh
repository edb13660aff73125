# Sourced after lib.sh by the tests that upload to sitegate-rx
# (test_uplink.sh, test_rx_two.sh, test_rx_pg_restart.sh): the test site
# with an [uplink], the gateway's /api/uplink, and the weighbridge's tickets
# that make signed ledger records. They need $MN, $RX_PORT and $T/pki.

# uplink_conf FILE SITE CERT_DIR [extra uplink keys...]: the test site with
# an [uplink] to the receiver.
uplink_conf() {
  f=$1 site=$2 dir=$3
  shift 3
  {
    printf '[device wb-01]\ntype = scale\ninsecure = yes\n\n[uplink]\nhost = 127.0.0.1\nport = %s\n' "$RX_PORT"
    printf 'server_name = localhost\nca = %s\ncert = %s\nkey = %s\n' "$T/pki/ca.crt" \
      "$dir/gateway-$MN.crt" "$dir/gateway-$MN.key"
    printf 'rtd_interval_s = 1\nlag_s = 1\novertime_s = 3\nrecount = 2\nbackoff_max_s = 2\n'
    for kv in "$@"; do printf '%s\n' "$kv"; done
  } | write_conf "$f"
  sed -i "s/^id = TEST-SITE-01$/id = $site/" "$f"
}

up() { curl -sf "$SITECTL_URL/api/uplink"; }
# up_is PYTHON-EXPR: the expression over /api/uplink's JSON `j` is true.
up_is() { [ "$(up | json "$1" 2>/dev/null)" = True ]; }
# up_wait SECONDS WHAT PYTHON-EXPR
up_wait() { wait_for "$1" "$2" up_is "$3"; }

TICKET=1000
ticket() { # a waste ticket from the weighbridge, committed and signed
  TICKET=$((TICKET + 1))
  r=$(coap post /w 50 "{\"scale\":\"wb-01\",\"no\":$TICKET,\"t\":$(now_s),\"plate\":\"黑A1$TICKET\",\"dir\":\"out\",\"gross_kg\":31800,\"tare_kg\":14200,\"net_kg\":17600,\"category\":\"engineering\",\"kind\":\"concrete\",\"dest\":\"recycling\",\"dest_name\":\"Harbin yard; gate 2\"}")
  expect_code 2.01 "$r" "ticket $TICKET"
}
