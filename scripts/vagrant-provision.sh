#!/usr/bin/env bash
# Provisions a Vagrant VM of the Vigil test bed (see the Vagrantfile):
#   vagrant-provision.sh server ADDR   run vigil-server listening on ADDR
#   vagrant-provision.sh agent ADDR    run vigil-agent reporting to ADDR
# Each runs as a systemd unit (vigil-server or vigil-agent).
set -euo pipefail
role="${1:?role: server or agent}"
addr="${2:?server address host:port}"
cd /vigil
scripts/install-deps.sh
export PATH="/usr/local/go/bin:$PATH"
go build -o /usr/local/bin/ ./agent/cmd/vigil-agent ./server/cmd/vigil-server ./server/cmd/vigilctl

case "$role" in
server) exec_start="/usr/local/bin/vigil-server --listen $addr --db /var/lib/vigil/server.db" ;;
agent) exec_start="/usr/local/bin/vigil-agent --server $addr" ;;
*) echo "unknown role $role" >&2; exit 2 ;;
esac

cat >"/etc/systemd/system/vigil-$role.service" <<EOT
[Unit]
Description=Vigil $role
After=network-online.target

[Service]
ExecStart=$exec_start
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOT
systemctl daemon-reload
systemctl enable --now "vigil-$role.service"
printf 'export VIGIL_SERVER=%s\n' "$addr" >/etc/profile.d/vigil.sh
