#!/usr/bin/env bash
# Starts the local registry the tests push to and pull from: docker-registry
# (distribution) on 127.0.0.1:5000, plain HTTP, storage under
# /var/tmp/peers-registry. Idempotent: nothing happens when it already answers.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

pidfile="$REGISTRY_STORAGE/registry.pid"
logfile="$REGISTRY_STORAGE/registry.log"
if registry_up; then
    log "registry already up at http://$REGISTRY_ADDR"
    exit 0
fi
mkdir -p "$REGISTRY_STORAGE/data"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "pid $(cat "$pidfile") is alive but does not answer; stopping it"
    kill "$(cat "$pidfile")" || true
    sleep 1
fi
config="$REGISTRY_STORAGE/config.yml"
cat > "$config" <<CONF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REGISTRY_STORAGE/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REGISTRY_ADDR
health:
  storagedriver:
    enabled: false
CONF
log "starting docker-registry on $REGISTRY_ADDR"
setsid nohup /usr/bin/docker-registry serve "$config" >>"$logfile" 2>&1 </dev/null &
echo $! > "$pidfile"
for _ in $(seq 1 50); do
    registry_up && { log "registry up (pid $(cat "$pidfile")), log $logfile"; exit 0; }
    sleep 0.2
done
tail -20 "$logfile" >&2
die "the registry did not come up"
