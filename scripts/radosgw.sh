#!/usr/bin/env bash
# A real S3 for the store's integration suite: single-node Ceph (monitor + memstore OSD + RADOS Gateway)
# on 127.0.0.1, auth none, installed from Debian packages when missing. Linux only; installing needs root.
#
#   bash scripts/radosgw.sh start [DIR]   start it (S3 at http://127.0.0.1:$FANOUT_RGW_PORT, keys testkey/testsecret)
#   bash scripts/radosgw.sh stop [DIR]    stop the three daemons it started (by their pid files)
#   bash scripts/radosgw.sh test          start, run vitest.s3-real.config.ts against it, stop (npm run test:s3-real)
#
# Based on ../shared/recipes/radosgw-single-node.sh. Quirks of this Ceph: a streamed PutObject needs
# AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED, and If-Match takes only the unquoted ETag (the store copes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DIR=${2:-${FANOUT_RGW_DIR:-/tmp/fanout-radosgw}}
RGW_PORT=${FANOUT_RGW_PORT:-7480}
MON_PORT=${FANOUT_MON_PORT:-6789}
ENDPOINT="http://127.0.0.1:$RGW_PORT"

install_if_missing() {
  if command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null; then return; fi
  if [ "$(uname -s)" != Linux ] || [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "radosgw: not installed, and installing needs Debian/Ubuntu and root (apt-get install radosgw ceph-mon ceph-osd)" >&2
    exit 1
  fi
  echo "radosgw: installing radosgw ceph-mon ceph-osd (about 270 MB)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends radosgw ceph-mon ceph-osd ceph-common curl >/dev/null
}

start() {
  install_if_missing
  stop quiet
  rm -rf "$DIR"
  mkdir -p "$DIR"/{mon.a,osd.0,run,log,rgw}
  local fsid conf uuid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  conf="$DIR/ceph.conf"
  cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 2147483648
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
keyring = $DIR/keyring
[osd]
osd class update on start = false
osd crush update on start = false
[mon.a]
mon data = $DIR/mon.a
[osd.0]
osd data = $DIR/osd.0
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $DIR/rgw
CONF
  local c=(-c "$conf")
  (
    cd "$DIR"
    ceph-authtool --create-keyring keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
    monmaptool --create --addv a "v1:127.0.0.1:$MON_PORT" --fsid "$fsid" monmap >/dev/null
    ceph-mon "${c[@]}" --mkfs -i a --monmap monmap --keyring keyring
    ceph-mon "${c[@]}" -i a
    uuid=$(cat /proc/sys/kernel/random/uuid)
    ceph "${c[@]}" osd new "$uuid" >/dev/null
    ceph-osd "${c[@]}" -i 0 --mkfs --osd-uuid "$uuid" 2>/dev/null
    ceph "${c[@]}" osd crush add-bucket localhost host >/dev/null
    ceph "${c[@]}" osd crush move localhost root=default >/dev/null
    ceph "${c[@]}" osd crush add osd.0 1.0 host=localhost >/dev/null
    ceph-osd "${c[@]}" -i 0 2>/dev/null
    radosgw "${c[@]}" -n client.rgw.a
  )
  for _ in $(seq 90); do curl -s -o /dev/null "$ENDPOINT/" && break; sleep 1; done
  curl -s -o /dev/null "$ENDPOINT/" || { echo "radosgw: gateway did not answer on $ENDPOINT (logs in $DIR/log)" >&2; exit 1; }
  radosgw-admin "${c[@]}" user create --uid=tester --display-name=tester --access-key=testkey --secret=testsecret >/dev/null
  echo "radosgw: ready at $ENDPOINT (keys testkey/testsecret, data in $DIR)" >&2
}

# Stops exactly the daemons this script started, by the pids they wrote, never by name.
stop() {
  local pidfile pid
  for pidfile in "$DIR"/run/client.rgw.a.pid "$DIR"/run/osd.0.pid "$DIR"/run/mon.a.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  [ "${1:-}" = quiet ] || echo "radosgw: stopped" >&2
}

run_tests() {
  start
  trap 'stop' EXIT
  AWS_ENDPOINT_URL_S3="$ENDPOINT" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testkey AWS_SECRET_ACCESS_KEY=testsecret \
    AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED FANOUT_S3_REAL=1 \
    sh scripts/node24.sh node_modules/vitest/vitest.mjs run --config vitest.s3-real.config.ts
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  test) run_tests ;;
  *) echo "usage: bash scripts/radosgw.sh start|stop|test [DIR]" >&2; exit 2 ;;
esac
