#!/usr/bin/env bash
# A private one-node SLURM cluster on this machine, for smriflow's SLURM tests (tests/slurm/) and CI.
#
#   bash tests/slurm/cluster.sh start    # install Debian's slurm/munge if missing, start, wait until idle
#   bash tests/slurm/cluster.sh status   # exit 0 when the cluster answers, 1 otherwise
#   bash tests/slurm/cluster.sh stop     # cancel the jobs, stop the daemons this script started
#
# Everything lives in $SMRIFLOW_SLURM_STATE (default /tmp/smriflow-slurm): the munge key and socket, the
# controller's state, the daemons' logs and PID files, and the job-completion log (jobcomp.txt: the final
# state of every job, as there is no accounting database). The only file written elsewhere is
# /etc/slurm/slurm.conf, where SLURM's clients look for it (a foreign one is kept aside and put back by
# `stop`). Both commands are idempotent; `stop` kills only the PIDs that `start` recorded.
# Needs root (apt-get, munge key ownership). Tested on Debian 12 with slurm-wlm 22.05 and munge 0.5.
set -euo pipefail

STATE=${SMRIFLOW_SLURM_STATE:-/tmp/smriflow-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# written by smriflow tests/slurm/cluster.sh"
START_TIMEOUT=${SMRIFLOW_SLURM_START_TIMEOUT:-60}
PACKAGES=(slurmctld slurmd slurm-client munge)
DAEMONS=(slurmd slurmctld munged) # stop order

log() { echo "cluster.sh: $*" >&2; }

die() {
    log "error: $*"
    for file in "$STATE"/log/*.log; do
        [[ -s $file ]] || continue
        echo "--- last lines of $file" >&2
        tail -n 15 "$file" >&2
    done
    exit 1
}

pid_alive() { # pid_alive NAME: the recorded daemon NAME is running (and is still that program)
    local pidfile=$STATE/run/$1.pid pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$1"
}

install_packages() {
    local missing=() created_policy=0
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
    command -v slurmd >/dev/null 2>&1 || missing+=(slurmd)
    command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
    command -v munged >/dev/null 2>&1 || missing+=(munge)
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]} (apt-get)"
    # The packages' postinst would start system-wide daemons through invoke-rc.d: forbid it while
    # installing (unless the machine already has a policy), since we run our own private ones.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local status=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null; } ||
        status=$?
    ((created_policy)) && rm -f /usr/sbin/policy-rc.d
    ((status == 0)) || die "apt-get install ${PACKAGES[*]} failed (exit $status)"
}

node_hardware() { # the NodeName line's hardware fields, from `slurmd -C`
    local line
    line=$(slurmd -C | head -n 1) || die "slurmd -C failed"
    local fields=() key
    for key in CPUs Boards SocketsPerBoard CoresPerSocket ThreadsPerCore RealMemory; do
        [[ $line =~ (^|[[:space:]])$key=([0-9]+) ]] && fields+=("$key=${BASH_REMATCH[2]}")
    done
    echo "${fields[*]}"
}

write_config() {
    local hardware cpus memory defmem
    hardware=$(node_hardware)
    [[ $hardware =~ CPUs=([0-9]+) ]] && cpus=${BASH_REMATCH[1]}
    [[ $hardware =~ RealMemory=([0-9]+) ]] && memory=${BASH_REMATCH[1]}
    # Without a default, a job without --mem gets the whole node and jobs run one at a time.
    defmem=$((memory / cpus))
    ((defmem > 2048)) && defmem=2048
    mkdir -p /etc/slurm
    if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        cp -p "$CONF" "$STATE/slurm.conf.foreign"
        log "kept the existing $CONF aside as $STATE/slurm.conf.foreign (restored by stop)"
    fi
    cat >"$CONF" <<EOF
$MARKER (state in $STATE)
ClusterName=smriflow
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Loopback only: this machine may have no other network.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$defmem
# Start jobs as soon as they are submitted (the default 3 s delay makes every job wait).
SchedulerParameters=batch_sched_delay=0
# Jobs that depend on a failed job are cancelled instead of staying PENDING forever.
DependencyParameters=kill_invalid_depend
# No accounting database (sacct is disabled): the final state of each job goes to this file.
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
MailProg=/bin/true
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=localhost $hardware State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    local key=$STATE/munge/munge.key
    if [[ ! -s $key ]]; then
        dd if=/dev/urandom bs=1 count=1024 of="$key" status=none
    fi
    chown munge:munge "$STATE/munge" "$key"
    chmod 0700 "$STATE/munge"
    chmod 0400 "$key"
    # munged runs as user munge: every folder above its files must let it through.
    chmod 0755 "$STATE" "$STATE/log" "$STATE/run"
    touch "$STATE/log/munged.log"
    chown munge:munge "$STATE/log/munged.log"
    runuser -u munge -- munged --socket="$STATE/munge/munge.socket" --key-file="$key" \
        --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/log/munged.log" --force ||
        die "munged did not start"
    local waited=0
    until [[ -s $STATE/munge/munged.pid ]]; do
        ((waited++ < 50)) || die "munged wrote no PID file"
        sleep 0.1
    done
    cp "$STATE/munge/munged.pid" "$STATE/run/munged.pid"
    munge -n -S "$STATE/munge/munge.socket" | unmunge -S "$STATE/munge/munge.socket" >/dev/null ||
        die "munge -n | unmunge failed on $STATE/munge/munge.socket"
}

cluster_answers() { # the node is up: idle, mixed or allocated
    local state
    state=$(timeout 10 sinfo -h -n localhost -o %t 2>/dev/null) || return 1
    [[ $state =~ ^(idle|mix|alloc|comp)$ ]]
}

start() {
    if pid_alive slurmctld && pid_alive slurmd && pid_alive munged && cluster_answers; then
        log "already running (state in $STATE)"
        return 0
    fi
    stop_daemons quiet # leftovers of a half-started cluster
    install_packages
    mkdir -p "$STATE"/{munge,ctld,spool,run,log}
    export SLURM_CONF=$CONF
    write_config
    start_munge
    slurmctld -i || die "slurmctld did not start"
    slurmd -N localhost || die "slurmd did not start"
    local deadline=$((SECONDS + START_TIMEOUT)) state=""
    until cluster_answers; do
        if ((SECONDS > deadline)); then
            state=$(timeout 10 sinfo -h -n localhost -o '%t %E' 2>&1 || true)
            die "the node is not idle after ${START_TIMEOUT} s (sinfo: ${state:-no answer})"
        fi
        # A node that slurmctld remembers as down (an earlier run) comes back with 'resume'.
        if [[ $(timeout 10 sinfo -h -n localhost -o %t 2>/dev/null || true) =~ ^(down|drain) ]]; then
            scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
        fi
        sleep 0.2
    done
    timeout 60 srun -N1 -n1 true || die "srun true failed: the cluster does not run jobs"
    log "running: $(sinfo -h -n localhost -o '%n %t, %c CPUs, %m MB') (state in $STATE)"
}

stop_daemons() {
    local name pid waited
    for name in "${DAEMONS[@]}"; do
        if pid_alive "$name"; then
            pid=$(<"$STATE/run/$name.pid")
            kill -TERM "$pid" 2>/dev/null || true
            waited=0
            while kill -0 "$pid" 2>/dev/null && ((waited++ < 100)); do sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then
                log "$name (PID $pid) ignored TERM for 10 s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            [[ ${1:-} == quiet ]] || log "stopped $name (PID $pid)"
        fi
        rm -f "$STATE/run/$name.pid"
    done
}

stop() {
    if pid_alive slurmctld && command -v scancel >/dev/null 2>&1; then
        timeout 20 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    fi
    stop_daemons
    if [[ -e $STATE/slurm.conf.foreign ]]; then
        mv "$STATE/slurm.conf.foreign" "$CONF"
        log "restored the previous $CONF"
    elif [[ -e $CONF ]] && grep -qF "$MARKER" "$CONF"; then
        rm -f "$CONF"
    fi
    log "stopped"
}

status() {
    if pid_alive slurmctld && pid_alive slurmd && pid_alive munged && cluster_answers; then
        sinfo -h -n localhost -o '%n %t, %c CPUs, %m MB'
        squeue -h -o '%i %j %T %r' || true
        return 0
    fi
    echo "not running (state in $STATE)"
    return 1
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
