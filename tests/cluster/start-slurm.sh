#!/usr/bin/env bash
# Start a real one-node SLURM cluster, with accounting (slurmdbd + MariaDB), on
# this machine, for tests/test_slurm.py. Needs root and apt (Debian/Ubuntu).
# Daemons are started by hand (no systemd) and their pids written to
# $SLURM_TEST_STATE/pids, so that stop-slurm.sh stops only what this started.
# The node advertises one fake GPU (gres on /dev/null), enough for --gpus=1.
set -euo pipefail
STATE=${SLURM_TEST_STATE:-/tmp/unetflow-slurm}
CLUSTER=unetflow
mkdir -p "$STATE"/{spool,state,log,mysql}
: > "$STATE/pids"

if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q slurmctld slurmd slurm-client munge slurmdbd mariadb-server
fi

HOST=$(hostname -s)
# all CPUs of the machine, not the affinity this script inherited (a test runner may have
# narrowed it); the daemons started below inherit the widened affinity
CPUS=$(grep -c ^processor /proc/cpuinfo)
if command -v taskset >/dev/null; then taskset -a -p -c "0-$((CPUS - 1))" $$ >/dev/null; fi
# RealMemory above what slurmd detects would drain the node: stay well below
MEMORY=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))

# munge
mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
sleep 1
cat /run/munge/munged.pid >> "$STATE/pids"

# MariaDB for the accounting database
if [ ! -d "$STATE/mysql/mysql" ]; then
  mariadb-install-db --user=root --datadir="$STATE/mysql" >/dev/null
fi
mariadbd --user=root --datadir="$STATE/mysql" --socket="$STATE/mysql.sock" --pid-file="$STATE/mysql.pid" \
  --port=3307 --bind-address=127.0.0.1 >"$STATE/log/mysql.log" 2>&1 &
for _ in $(seq 60); do [ -S "$STATE/mysql.sock" ] && break; sleep 0.5; done
cat "$STATE/mysql.pid" >> "$STATE/pids"
# slurmdbd reaches it over TCP on 127.0.0.1:3307, so as not to touch the system's own socket
mariadb --socket="$STATE/mysql.sock" -uroot -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; \
  CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; \
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"

mkdir -p /etc/slurm "$STATE/etc-slurm-saved"
# keep the machine's own configuration, if any: stop-slurm.sh puts it back (or removes ours,
# so that SLURM's tools, which the Snakemake SLURM plugin calls on import, do not wait for
# a controller that is gone)
for conf in slurm.conf slurmdbd.conf gres.conf; do
  if [ -f "/etc/slurm/$conf" ] && [ ! -f "$STATE/etc-slurm-saved/$conf" ] && [ ! -f "$STATE/etc-slurm-ours" ]; then
    cp -p "/etc/slurm/$conf" "$STATE/etc-slurm-saved/$conf"
  fi
done
touch "$STATE/etc-slurm-ours"
cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3307
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 /etc/slurm/slurmdbd.conf

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
AccountingStoreFlags=job_comment
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
DefMemPerCPU=1000
MinJobAge=600
ReturnToService=2
NodeName=$HOST CPUs=$CPUS RealMemory=$MEMORY Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=$HOST Name=gpu File=/dev/null
CONF

slurmdbd
for _ in $(seq 60); do
  [ -s "$STATE/slurmdbd.pid" ] && timeout 5 sacctmgr -n list cluster >/dev/null 2>&1 && break
  sleep 0.5
done
cat "$STATE/slurmdbd.pid" >> "$STATE/pids"
timeout 10 sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
timeout 10 sacctmgr -i add account tests Cluster="$CLUSTER" >/dev/null 2>&1 || true
timeout 10 sacctmgr -i add user root Account=tests Cluster="$CLUSTER" >/dev/null 2>&1 || true

slurmctld
slurmd
for _ in $(seq 120); do
  if timeout 5 sinfo -h -o %T 2>/dev/null | grep -qx idle; then break; fi
  sleep 0.5
done
cat "$STATE/slurmctld.pid" "$STATE/slurmd.pid" >> "$STATE/pids"
sinfo -h -o %T | grep -qx idle || { echo "the SLURM node did not become idle:"; sinfo; tail -20 "$STATE"/log/*.log; exit 1; }
echo "SLURM cluster $CLUSTER up on $HOST ($CPUS CPUs, ${MEMORY} MB, 1 GPU); state in $STATE"
