#!/usr/bin/env bash
# A single-node SLURM cluster from Debian's packages, for CI and for trying the `slurm` profile on
# one machine: munge, a local MariaDB, slurmdbd (so `sacct` -- the SLURM executor plugin's default
# status command -- works as on a real cluster), slurmctld and slurmd.
#
#   sudo cluster/slurm-setup.sh          # install (if needed) and start; idempotent
#   sudo cluster/slurm-setup.sh status   # exit 0 when the cluster answers and accounting works
#   sudo cluster/slurm-setup.sh stop     # stop the daemons this script starts
#
# The one node is declared with the shape of a typical 8-GPU training node (64 CPUs, 512 GB,
# gres gpu:8) whatever the machine really has (`SlurmdParameters=config_overrides`), and its GPUs
# are declared in gres.conf against placeholder device files. So the production resource requests
# of slurm/config.yaml (4 GPUs for SFT/DPO, 1 for evaluation, an exclusive node for the teacher,
# 128 GB merges) are accepted and scheduled exactly as they are written; the jobs then run on the
# CPU (CUDA is not available, and the launcher falls back to one process). Partitions: `cpu`
# (default) and `gpu`, both on the one node. Debian bookworm ships SLURM 22.05.
#
# Needs root (package installation, daemons). Works without systemd (daemons are started directly).
# Environment: SLURM_SETUP_CPUS, SLURM_SETUP_MEM_MB, SLURM_SETUP_GPUS override the node's shape.
set -euo pipefail

CLUSTER=compass
NODE="$(hostname -s)"
CPUS="${SLURM_SETUP_CPUS:-64}"
MEM_MB="${SLURM_SETUP_MEM_MB:-512000}"
GPUS="${SLURM_SETUP_GPUS:-8}"
CONF=/etc/slurm
STATE=/var/lib/slurm
LOGS=/var/log/slurm
DB_PASS=compass-slurmdbd
PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server)

say() { printf 'slurm-setup: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.5 s
wait_for() {
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            say "$what did not come up within ${limit}s; last log lines:"
            tail -n 20 "$LOGS"/*.log /var/log/mysql/error.log 2>/dev/null >&2 || true
            die "$what did not start"
        fi
        sleep 0.5
    done
}

node_ready() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

cluster_ok() {
    command -v sinfo >/dev/null && node_ready && sacct -n -X -S now-1hours >/dev/null 2>&1 &&
        sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"
}

# stop_daemon NAME: end the daemon this script started, by its pid file, and wait for it.
stop_daemon() {
    local pidfile="/run/$1.pid" pid
    [[ -f "$pidfile" ]] || return 0
    pid="$(cat "$pidfile")"
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
    rm -f "$pidfile"
}

stop() {
    for d in slurmd slurmctld slurmdbd; do stop_daemon "$d"; done
    if [[ -S /run/mysqld/mysqld.sock ]]; then mysqladmin shutdown 2>/dev/null || true; fi
    if [[ -f /run/munge/munged.pid ]]; then kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
    say "stopped"
}

case "${1:-start}" in
    status) cluster_ok && { sinfo; exit 0; } || exit 1 ;;
    stop) stop; exit 0 ;;
    start) ;;
    *) die "usage: $0 [start|status|stop]" ;;
esac

if cluster_ok; then
    say "already running: node $NODE ($(sinfo -h -N -o '%c CPUs, %m MB, %G' | head -1) ), accounting up"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "needs root (installs Debian packages and starts daemons); run it with sudo"
t0=$SECONDS

# 1. Packages -----------------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if ((${#missing[@]})); then
    say "installing ${missing[*]} (apt-get)"
    command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian/Ubuntu system"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed (no network to the Debian mirror?)"
    # Keep the packages' maintainer scripts from starting the daemons (with Debian's defaults);
    # they are configured and started below.
    policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    fi
    rc=0
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    [[ -z "$policy" ]] || rm -f "$policy"
    ((rc == 0)) || die "apt-get install ${missing[*]} failed"
fi
say "packages ready ($((SECONDS - t0)) s): $(dpkg-query -W -f='${Version}' slurmctld) slurm"

# 2. munge --------------------------------------------------------------------------------------
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    wait_for 20 munged sh -c 'munge -n | unmunge'
fi

# 3. MariaDB for slurmdbd -----------------------------------------------------------------------
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if ! mysqladmin ping >/dev/null 2>&1; then
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    (cd / && exec setsid -f mysqld_safe --user=mysql </dev/null >/dev/null 2>&1)
    wait_for 60 MariaDB mysqladmin ping
fi
mysql -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '${DB_PASS}';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL

# 4. Configuration ------------------------------------------------------------------------------
mkdir -p "$CONF" "$STATE/slurmctld" "$STATE/slurmd" "$STATE/fake-gpus" "$LOGS"
for i in $(seq 0 $((GPUS - 1))); do : > "$STATE/fake-gpus/gpu$i"; done

cat > "$CONF/slurmdbd.conf" <<EOF
# Written by cluster/slurm-setup.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=${DB_PASS}
StorageLoc=slurm_acct_db
EOF
chmod 600 "$CONF/slurmdbd.conf"

cat > "$CONF/slurm.conf" <<EOF
# Written by cluster/slurm-setup.sh: one node, accounting through slurmdbd, GPUs as gres.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=$STATE/slurmd
StateSaveLocation=$STATE/slurmctld
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=4000
# The node is declared with the shape below whatever the machine has (see the header).
SlurmdParameters=config_overrides
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
MinJobAge=300
KillWait=10
InactiveLimit=0
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Sockets=2 CoresPerSocket=$((CPUS / 2)) ThreadsPerCore=1 RealMemory=$MEM_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF

cat > "$CONF/gres.conf" <<EOF
# Written by cluster/slurm-setup.sh: placeholder device files stand for the GPUs.
NodeName=$NODE Name=gpu File=$STATE/fake-gpus/gpu[0-$((GPUS - 1))]
EOF

# 5. Daemons ------------------------------------------------------------------------------------
for d in slurmd slurmctld slurmdbd; do stop_daemon "$d"; done
slurmdbd
wait_for 30 slurmdbd sacctmgr -n show cluster
sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -n -P show account format=account | grep -qx "$CLUSTER" || sacctmgr -i add account "$CLUSTER" Description=compass Organization=compass >/dev/null
for u in root ${SUDO_USER:-}; do
    sacctmgr -n -P show user "$u" format=user | grep -qx "$u" || sacctmgr -i add user "$u" Account="$CLUSTER" >/dev/null
done
slurmctld
wait_for 30 slurmctld scontrol ping
slurmd
for _ in $(seq 1 60); do node_ready && break; sleep 0.5; done
if ! node_ready; then  # e.g. DOWN after an unclean stop
    scontrol update NodeName="$NODE" State=RESUME || true
    wait_for 20 "node $NODE" node_ready
fi
wait_for 30 "accounting (sacct)" cluster_ok

say "running in $((SECONDS - t0)) s: node $NODE, $(sinfo -h -N -n "$NODE" -o '%c CPUs, %m MB, %G' | head -1), partitions $(sinfo -h -o '%P' | paste -sd, -)"
