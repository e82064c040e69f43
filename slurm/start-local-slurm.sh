#!/usr/bin/env bash
# start-local-slurm.sh - a real one-node SLURM cluster on localhost for simcrop-bench CI
# and contributors (tests marked `slurm`, profile slurm/demo.yaml). See slurm/README.md.
#
# Target: Debian 12 (slurm 22.05 from Debian), run as root, no systemd (daemons
# are started as plain background processes). Idempotent: installs missing
# packages, rewrites the config, starts only the daemons that are not running
# (restarts slurmctld/slurmd if the config changed), then waits until the node
# is idle and a test step ran. A warm re-run takes about a second.
#
# Knobs (environment variables):
#   SLURM_ACCOUNTING=1  (default) also run MariaDB + slurmdbd so that `sacct`
#                       works. submitit polls `sacct` for job states; without it
#                       states are UNKNOWN and waiting on a job that died without
#                       writing a result (scancel, kill) never returns. 0 = lighter.
#   SLURM_NODE_CPUS=N   advertise N CPUs instead of the real count (more jobs at
#                       once on a 2-core box; nothing enforces CPU limits anyway).
#   SLURM_WAIT_S=60     how long to wait for the node to become idle.
# Stop everything with stop-local-slurm.sh (same folder).
set -euo pipefail

ACCOUNTING=${SLURM_ACCOUNTING:-1}
WAIT_S=${SLURM_WAIT_S:-60}
LOGS=/var/log/slurm
CONF=/etc/slurm/slurm.conf   # the compiled-in default: sbatch/sinfo/... need no SLURM_CONF

log() { echo "[start-local-slurm] $*"; }
die() { echo "[start-local-slurm] ERROR: $*" >&2; exit 1; }
# alive NAME: is the daemon whose pid is in /run/NAME.pid running? /run is not a
# tmpfs on every machine, so a stale pid file may name an unrelated process that
# reused the pid: check the process name too.
pidfile() { case $1 in munged) echo /run/munge/munged.pid ;; *) echo "/run/$1.pid" ;; esac; }
alive() { local f; f=$(pidfile "$1"); [ -s "$f" ] && [ "$(cat "/proc/$(cat "$f")/comm" 2>/dev/null)" = "$1" ]; }
wait_for() {   # wait_for SECONDS WHAT CMD... : retry CMD every 0.5 s
  local n=$(($1 * 2)) what=$2; shift 2
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "$what not ready after $((n / 2)) s; see $LOGS/"
}
start() {   # start NAME LOGFILE CMD...: run CMD (a daemon that forks) unless NAME runs
  local name=$1 logfile=$2; shift 2
  alive "$name" && return 0
  "$@" || { tail -5 "$logfile" >&2; die "$name failed to start"; }
}
stop() {   # stop NAME: SIGTERM the daemon and wait until it is gone
  alive "$1" || return 0
  local pid; pid=$(cat "$(pidfile "$1")"); kill "$pid"
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  die "$1 ($pid) did not stop"
}

[ "$(id -u)" -eq 0 ] || die "run as root: slurmd must be able to switch to each job's user"
mkdir -p "$LOGS"

# --- 1. Packages -----------------------------------------------------------------
# --no-install-recommends keeps it to 8 small packages (mariadb adds ~20 more).
# Debian's postinst scripts try to start the services; where policy-rc.d or the
# absence of an init system refuses, that is harmless: we start them below.
pkgs=(munge slurm-client slurmctld slurmd)
[ "$ACCOUNTING" = 1 ] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  { apt-get update && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends "${missing[@]}"; } >"$LOGS/apt.log" 2>&1 \
    || { tail -20 "$LOGS/apt.log"; die "apt-get failed"; }
fi

# --- 2. munge: signs every slurm message with a shared key -------------------------
# The munge package generates /etc/munge/munge.key; recreate it if an image lost it.
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 755 /run/munge   # systemd would create it (RuntimeDirectory)
# munged must run as the key's owner; it forks into the background by itself.
start munged /var/log/munge/munged.log runuser -u munge -- /usr/sbin/munged
wait_for 10 munged sh -c 'munge -n | unmunge'

# --- 3. slurm.conf ------------------------------------------------------------------
install -d -o slurm -g slurm /var/spool/slurmctld   # slurmctld runs as user slurm
install -d /var/spool/slurmd
chown slurm:slurm "$LOGS"
# Real CPU count and memory (MiB) as slurmd itself measures them.
read -r CPUS MEM < <(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*RealMemory=\([0-9]*\).*/\1 \2/p')
CPUS=${SLURM_NODE_CPUS:-$CPUS}
if [ "$ACCOUNTING" = 1 ]; then ACCT=accounting_storage/slurmdbd; else ACCT=accounting_storage/none; fi

cat >"$CONF.new" <<EOF
# Written by start-local-slurm.sh - one node, "localhost", is controller and compute node.
ClusterName=localci
# slurmctld accepts "localhost" as its own name whatever \`hostname\` says, and
# the node is called "localhost" too, so the real hostname never matters.
SlurmctldHost=localhost
# slurmctld drops root and runs as the "slurm" user the Debian package created.
SlurmUser=slurm
AuthType=auth/munge
# A requeued job (submitit checkpoint/timeout/preemption) may start again only
# after the credential lifetime: default 120 s, 10 s here.
AuthInfo=cred_expire=10
# Jobs that become eligible later (a requeued job, see above) wait for the next
# periodic scheduling pass: every 60 s (main) / 30 s (backfill) by default.
SchedulerParameters=sched_interval=2,bf_interval=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# Without systemd there is no delegated cgroup tree: track job processes through
# /proc and do no CPU binding or memory enforcement (mem is bookkeeping only).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# CPUs and memory are consumable resources, so small jobs run side by side.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that gives no --mem books ALL the node's memory and
# jobs then run one at a time.
DefMemPerCPU=1024
# Trust the CPUs/RealMemory below; never drain the node for "low memory/CPUs".
SlurmdParameters=config_overrides
# A DOWN node (e.g. after a restart) comes back as soon as slurmd registers.
ReturnToService=2
# scancel/time limit: SIGKILL 5 s after SIGTERM (default 30 s). submitit's job
# wrapper ignores SIGTERM, so this is how long a cancelled job lingers.
KillWait=5
# No mail program is installed; silences an error in the log.
MailProg=/bin/true
# Job states go to slurmdbd (-> MariaDB) so that sacct can report them; no
# per-job resource sampling (jobacct_gather/linux would add MaxRSS etc.).
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=$ACCT
AccountingStorageHost=localhost
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
if cmp -s "$CONF.new" "$CONF"; then rm "$CONF.new"; else
  mv "$CONF.new" "$CONF"
  log "config written: $CONF (CPUs=$CPUS RealMemory=$MEM accounting=$ACCOUNTING)"
  stop slurmd; stop slurmctld   # restarted below with the new config
fi

# --- 4. Accounting: MariaDB + slurmdbd, so that `sacct` answers -----------------------
if [ "$ACCOUNTING" = 1 ]; then
  install -d -o mysql -g root /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >"$LOGS/mariadb-install.log" 2>&1
  if ! mysqladmin ping >/dev/null 2>&1; then
    # --skip-networking: unix socket only, no TCP port 3306 to collide with.
    setsid /usr/sbin/mariadbd --user=mysql --skip-networking </dev/null >>"$LOGS/mariadb.log" 2>&1 &
    wait_for 30 MariaDB mysqladmin ping
  fi
  # slurmdbd logs in as MySQL user "slurm" over the socket; unix_socket auth
  # checks the OS user, so there is no password to store.
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=$LOGS/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
  # slurmdbd refuses a config that other users can read.
  chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf
  start slurmdbd "$LOGS/slurmdbd.log" /usr/sbin/slurmdbd
  wait_for 30 slurmdbd sacctmgr -n show cluster
fi

# --- 5. Controller and node daemons (both fork into the background) ---------------
# slurmctld registers the cluster in slurmdbd by itself on first start. It
# refuses to start on state saved under another ClusterName: drop such state.
grep -qsx localci /var/spool/slurmctld/clustername || rm -rf /var/spool/slurmctld/*
start slurmctld "$LOGS/slurmctld.log" /usr/sbin/slurmctld
wait_for 30 slurmctld scontrol ping
start slurmd "$LOGS/slurmd.log" /usr/sbin/slurmd

# --- 6. Wait until the node takes jobs, then run one real step -----------------------
for ((i = 0; i < WAIT_S * 2; i++)); do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
  case $state in
    idle | mixed | allocated) break ;;
    drain*) scontrol update NodeName=localhost State=RESUME || true ;;   # left over from a crash
  esac
  sleep 0.5
done
case $state in idle | mixed | allocated) ;; *)
  tail -5 "$LOGS/slurmctld.log" "$LOGS/slurmd.log"
  die "node state '$state' after $WAIT_S s" ;;
esac
timeout 60 srun -Q -t 1 true || die "srun test step failed"
log "ready after ${SECONDS}s: node localhost is $state (sinfo/sbatch/srun/squeue$([ "$ACCOUNTING" = 1 ] && echo /sacct) work)"
