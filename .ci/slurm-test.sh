#!/usr/bin/env bash
# CI: a real single-node SLURM cluster on this machine, driven by snakemake through the real
# SLURM executor plugin and the repository's profile (`--profile slurm`, slurm/config.yaml).
#
#   bash .ci/slurm-test.sh                       # part a only (a workflow that must fail)
#   bash .ci/slurm-test.sh <snakemake args...>   # part a, then part b: the demo must succeed
#   e.g. bash .ci/slurm-test.sh --configfile config/demo.yaml --config out=results/slurm-demo
#
# GPU: REAL GRES, no override. The node advertises one generic resource `gpu` (slurm.conf
# GresTypes=gpu, node Gres=gpu:1; gres.conf `Name=gpu File=/dev/null`: Slurm 22.05 drops a gpu
# without File=, and /dev/null is a character device it accepts as the "GPU"), so
# the `--gpus=1` that the plugin derives from the profile's `gpu: 1` is honoured by the
# scheduler: GPU jobs run one at a time and are allocated GRES=gpu:1(IDX:0) (checked below, by
# plain sbatch jobs and inside the failing workflow's GPU job). No CUDA device exists, of
# course: such a job gets CUDA_VISIBLE_DEVICES=0 as on a GPU node, but torch sees no GPU.
#
# Test-side caps, because this node is small: it has this machine's memory (~24 GB here), while
# a GPU rule asks for host_gib x margin of the config's gpu_costs (25 GB with config.yaml's),
# which SLURM would refuse outright ("Requested node configuration is not available").
# `--resources mem_mb=<half the node>` caps every job's mem_mb (snakemake constrains each job's
# resources by the global ones), so a GPU job and a CPU job fit side by side; `--max-threads
# <CPUs>` likewise for threads. Every other value is unchanged: gpu, partition and account from
# the profile, runtime from the rules' formula (README "What the workflow's GPU jobs cost").
#
# No accounting database: status through squeue (`--slurm-status-command squeue`; with the
# default, sacct, the plugin waits forever), `--slurm-no-account`. Every snakemake run is under
# a hard `timeout -s KILL` (a hung plugin ignores SIGTERM). Needs root (installs packages and
# runs munged/slurmctld/slurmd as root, without systemd). The config is /etc/slurm/slurm.conf +
# gres.conf (the jobstep plugin drops SLURM_CONF; an existing foreign config stops the test);
# munged runs on a private socket; state and logs live in $DLMAP_SLURM_TEST_DIR (default
# /tmp/dlmap-slurm-test). On exit: jobs cancelled, daemons stopped, /etc/slurm files removed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export OMP_NUM_THREADS=1
# Jobs run with the submitting environment (the plugin submits with --export=ALL); the venv
# first on PATH lets a job step find the same snakemake/python/dlmap.
export PATH="$ROOT/.venv/bin:$PATH"
SMK="$ROOT/.venv/bin/snakemake"
STATE=${DLMAP_SLURM_TEST_DIR:-/tmp/dlmap-slurm-test}
CONF_DIR=/etc/slurm
CONF_MARK="# Written by .ci/slurm-test.sh (removed when it exits)"
WROTE_CONF=0
FAIL_LIMIT=${DLMAP_SLURM_FAIL_TIMEOUT:-300}  # seconds; hard kill of the part-a snakemake
DEMO_LIMIT=${DLMAP_SLURM_DEMO_TIMEOUT:-1800} # seconds; hard kill of the part-b snakemake
START_LIMIT=60                               # seconds for the cluster to come up

[ "$(id -u)" = 0 ] || { echo "slurm-test: needs root (packages, munged, slurmd)" >&2; exit 1; }
[ -x "$SMK" ] || { echo "slurm-test: $SMK missing (create .venv first)" >&2; exit 1; }

# ---------------------------------------------------------------- timings
TIMINGS=()
now() { date +%s.%N; }
T_ALL=$(now)
phase() { PHASE=$1; T_PHASE=$(now); echo; echo "=== $PHASE"; }
phase_done() {
  local d
  d=$(awk -v a="$T_PHASE" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
  TIMINGS+=("$(printf '%-32s %7ss' "$PHASE" "$d")")
  echo "=== $PHASE: done in ${d}s"
}
print_timings() {
  echo
  echo "=== timings"
  local t
  for t in "${TIMINGS[@]}"; do echo "  $t"; done
  awk -v a="$T_ALL" -v b="$(now)" 'BEGIN { printf "  %-32s %7.1fs\n", "total", b - a }'
}

# ---------------------------------------------------------------- daemons we started
PIDS=()  # "name:pid", in start order
started() { PIDS+=("$1:$2"); echo "$1 $2" >> "$STATE/pids"; }
# Stop one process that this script (or its previous run, through $STATE/pids) started: by pid,
# and only while its command name is still the one we started. A `timeout` (around snakemake)
# counts only when its command line names $STATE; its children go first, with SIGKILL
# (snakemake may ignore SIGTERM; a SIGKILLed timeout would leave it running).
stop_pid() {
  local name=$1 pid=$2 i child
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 0
  if [ "$name" = timeout ]; then
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STATE/" || return 0
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do kill -KILL "$child" 2>/dev/null || true; done
  fi
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 0
    sleep 0.2
  done
  echo "slurm-test: $name ($pid) ignored SIGTERM; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
cancel_jobs() {
  local ids i
  ids=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
  [ -n "$ids" ] || return 0
  echo "slurm-test: cancelling leftover jobs: $(tr '\n' ' ' <<< "$ids")"
  # shellcheck disable=SC2086
  timeout 10 scancel $ids 2>/dev/null || true
  for i in $(seq 1 30); do
    [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null || true)" ] && return 0
    sleep 0.5
  done
}
teardown() {
  local rc=$? i entry
  trap - EXIT INT TERM
  phase "stop cluster"
  if [ ${#PIDS[@]} -gt 0 ]; then
    cancel_jobs
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
      entry=${PIDS[$i]}
      stop_pid "${entry%%:*}" "${entry##*:}"
      wait "${entry##*:}" 2>/dev/null || true
    done
  fi
  rm -f "$STATE/pids"
  if [ "$WROTE_CONF" = 1 ]; then rm -f "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; fi
  phase_done
  print_timings
  if [ "$rc" = 0 ]; then echo "slurm-test: PASSED"; else echo "slurm-test: FAILED (exit $rc)" >&2; fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

die() {
  echo "slurm-test: FAIL: $*" >&2
  exit 1
}
# A file, with snakemake's "Command:" line (kilobytes of base64 in job logs) cut short.
show_file() { echo "----- $1"; sed -E 's/^(  Command: .{160}).+/\1 .../' "$1" || true; }
show_daemon_logs() {
  local f
  for f in "$STATE"/log/*; do [ -f "$f" ] && show_file "$f" | tail -n 40; done
}
# Every SLURM job log under a folder (the plugin's per-job logs).
show_job_logs() {
  local f
  [ -d "$1" ] || { echo "(no SLURM job logs under $1)"; return 0; }
  find "$1" -type f -name '*.log' | sort | while read -r f; do show_file "$f"; done
}

# ---------------------------------------------------------------- 1. packages
phase "install SLURM + munge"
need=()
for p in slurmctld slurmd slurm-client munge; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    > "/tmp/dlmap-slurm-apt.log" 2>&1 || { cat /tmp/dlmap-slurm-apt.log >&2; die "apt-get install failed"; }
else
  echo "already installed: slurmctld slurmd slurm-client munge"
fi
dpkg-query -W slurmctld slurmd slurm-client munge
phase_done

# ---------------------------------------------------------------- 2. cluster
phase "start cluster"
# Leftovers of a previous run that was killed before its trap ran: stop its snakemake and
# daemons (by the pids it recorded), then start from an empty state folder. (Job processes of
# its cluster, under an orphaned slurmstepd, are not tracked: they end with their job.)
if [ -f "$STATE/pids" ]; then
  while read -r name pid; do
    echo "stopping $name ($pid) left by a previous run"
    stop_pid "$name" "$pid"
  done < <(tac "$STATE/pids")
fi
if [ -d "$STATE" ]; then
  [ -f "$STATE/.dlmap-slurm-test" ] || die "$STATE exists and is not ours; set DLMAP_SLURM_TEST_DIR"
  rm -rf "$STATE"
fi
mkdir -p "$STATE"/{etc,log,ctld,spool}
touch "$STATE/.dlmap-slurm-test"
chmod 755 "$STATE" # munged wants every directory above its socket searchable

HOST=$(hostname -s)
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) # nproc obeys OMP_NUM_THREADS
MEM_TOTAL=$(free -m | awk '/^Mem:/ { print $2 }')
HEADROOM=$((MEM_TOTAL / 10 > 1024 ? MEM_TOTAL / 10 : 1024))
NODE_MEM=$((MEM_TOTAL - HEADROOM))
echo "node $HOST: CPUs=$CPUS RealMemory=${NODE_MEM} MB (of $MEM_TOTAL), Gres=gpu:1 (on /dev/null)"

# munge: the system key (created when absent), served by a private munged on a private socket.
if [ ! -s /etc/munge/munge.key ]; then
  echo "creating /etc/munge/munge.key"
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
fi
install -m 600 /etc/munge/munge.key "$STATE/etc/munge.key"
MUNGE_SOCKET="$STATE/munge.sock"

# The config goes where every SLURM command looks by default: the jobstep plugin strips all
# SLURM_* variables (SLURM_CONF too) before its `srun`, so a private SLURM_CONF cannot work.
# An existing config that is not ours is never overwritten; ours is removed on exit.
for f in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
  if [ -e "$f" ] && ! head -n 1 "$f" | grep -qF "$CONF_MARK"; then
    die "$f exists and was not written by this script: not a machine for this test"
  fi
done
mkdir -p "$CONF_DIR"
WROTE_CONF=1
cat > "$CONF_DIR/slurm.conf" <<EOF
$CONF_MARK: one node, no accounting, no cgroups, one GPU without CUDA.
ClusterName=dlmapci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# The plugin's squeue status check needs finished jobs listed a while (it advises >= 120 s).
MinJobAge=300
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$NODE_MEM Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
cat > "$CONF_DIR/gres.conf" <<EOF
$CONF_MARK
# A GPU the scheduler counts, with no CUDA device behind it. Slurm 22.05 drops a gpu without
# File= ("Removing file-less GPU"), so it is bound to /dev/null, a character device it accepts
# (nothing constrains devices here: TaskPlugin=task/none).
AutoDetect=off
NodeName=$HOST Name=gpu File=/dev/null
EOF

/usr/sbin/munged -F --socket="$MUNGE_SOCKET" --key-file="$STATE/etc/munge.key" \
  --pid-file="$STATE/munged.pid" --seed-file="$STATE/munged.seed" \
  --log-file="$STATE/log/munged.log" > "$STATE/log/munged.out" 2>&1 &
started munged $!
/usr/sbin/slurmctld -D -i > "$STATE/log/slurmctld.out" 2>&1 &
started slurmctld $!
/usr/sbin/slurmd -D -N "$HOST" > "$STATE/log/slurmd.out" 2>&1 &
started slurmd $!

deadline=$((SECONDS + START_LIMIT))
until [ "$(timeout 5 sinfo -h -N -n "$HOST" -o %t 2>/dev/null || true)" = idle ]; do
  if [ $SECONDS -ge $deadline ]; then
    timeout 5 sinfo -N -l || true
    show_daemon_logs
    die "node $HOST not idle after ${START_LIMIT}s"
  fi
  for entry in "${PIDS[@]}"; do
    kill -0 "${entry##*:}" 2>/dev/null || { show_daemon_logs; die "${entry%%:*} exited"; }
  done
  sleep 0.5
done
sinfo -N -o '%N %P %t %c %m %G'
phase_done

# ---------------------------------------------------------------- 3. GPU and environment check
phase "GPU + environment check (sbatch)"
check_out="$STATE/check.out"
# (sbatch --wait polls every ~10 s; squeue every 0.5 s: finished jobs stay listed for MinJobAge.)
# shellcheck disable=SC2016 # the job's shell expands these
job=$(sbatch --parsable --job-name gpu-check --gpus=1 --ntasks=1 --cpus-per-gpu=1 --mem=100 -t 2 \
  --export=ALL -o "$check_out" --wrap '
    echo "ALLOC $(scontrol -d -o show job "$SLURM_JOB_ID")"
    echo "SNAKEMAKE $(command -v snakemake)"
    echo "PYTHON $(command -v python)"
    srun --ntasks=1 bash -c "echo STEP ok on \$(hostname), CUDA_VISIBLE_DEVICES=\${CUDA_VISIBLE_DEVICES:-unset} SLURM_GPUS_ON_NODE=\${SLURM_GPUS_ON_NODE:-unset}"
  ')
deadline=$((SECONDS + 60))
state=
while :; do
  state=$(squeue -h -t all -j "$job" -o %T 2>/dev/null || true)
  case "$state" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
  [ $SECONDS -lt $deadline ] || break
  sleep 0.5
done
echo "job $job (--gpus=1): ${state:-gone}"
[ -f "$check_out" ] && cat "$check_out"
[ "$state" = COMPLETED ] || { show_daemon_logs; die "a job requesting --gpus=1 did not complete"; }
grep -q '^ALLOC .* GRES=gpu:1(IDX:0)' "$check_out" || die "the GPU job got no gres/gpu=1 allocation"
grep -q '^STEP ok .*SLURM_GPUS_ON_NODE=1$' "$check_out" || die "the job step (srun) did not run with its GPU"
grep -qx "SNAKEMAKE $ROOT/.venv/bin/snakemake" "$check_out" \
  || die "jobs do not see the venv's snakemake first on PATH"
# The scheduler counts the one GPU: of two 1-CPU GPU jobs on this 2-CPU node, one waits.
first=$(sbatch --parsable --job-name gpu-hold --gpus=1 --cpus-per-gpu=1 --mem=100 -t 1 -o /dev/null --wrap 'sleep 30')
second=$(sbatch --parsable --job-name gpu-wait --gpus=1 --cpus-per-gpu=1 --mem=100 -t 1 -o /dev/null --wrap 'true')
deadline=$((SECONDS + 20))
until [ "$(squeue -h -j "$first" -o %T)" = RUNNING ]; do
  [ $SECONDS -lt $deadline ] || die "the first GPU job did not start"
  sleep 0.5
done
deadline=$((SECONDS + 15))
while :; do
  queue=$(squeue -h -t all -j "$second" -o '%T %r')
  [ "$queue" != "PENDING Resources" ] || break
  case "$queue" in PENDING*) ;; *) die "a second GPU job ran beside the first: $queue" ;; esac
  [ $SECONDS -lt $deadline ] || die "the second GPU job is not waiting for Resources: $queue"
  sleep 0.5
done
echo "second GPU job while the first runs: $queue"
scancel "$first" "$second"
echo "OK: --gpus=1 honoured (gres/gpu=1, one GPU job at a time), jobs inherit PATH (venv first)"
phase_done

# ---------------------------------------------------------------- 4. snakemake via the plugin
# Flags for every run, before the caller's arguments (a later flag of the caller wins).
COMMON=(
  --profile slurm
  --slurm-status-command squeue
  --slurm-no-account
  --slurm-init-seconds-before-status-checks 2
  --resources "mem_mb=$((NODE_MEM / 2))" "gpu=100"  # gpu: as the profile's (replaced here)
  --max-threads "$CPUS"
)
# run_snakemake NAME LIMIT ARGS...: snakemake under a hard kill timeout, output shown and kept
# in $STATE/NAME.log; returns snakemake's exit status (137 when killed by the timeout).
run_snakemake() {
  local name=$1 limit=$2 rc
  shift 2
  echo "+ timeout -s KILL $limit snakemake ${COMMON[*]} $*"
  set +e
  # (bash records its pid, then becomes the timeout: a rerun after this script was SIGKILLed
  # can stop an orphaned snakemake that would otherwise write into the new run's folders.)
  # shellcheck disable=SC2016
  bash -c 'echo "timeout $$" >> "$1"; shift; exec timeout -s KILL "$@"' _ "$STATE/pids" \
    "$limit" "$SMK" "${COMMON[@]}" "$@" 2>&1 | tee "$STATE/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  echo "snakemake exit status: $rc"
  return "$rc"
}

phase "part a: failing workflow"
FAIL_WD="$STATE/fail-wf"
mkdir -p "$FAIL_WD"
rc=0
run_snakemake fail "$FAIL_LIMIT" --snakefile "$ROOT/tests/slurm/Snakefile" --directory "$FAIL_WD" \
  --slurm-logdir "$FAIL_WD/slurm-logs" || rc=$?
fail_a() { show_job_logs "$FAIL_WD/slurm-logs"; die "part a: $*"; }
[ "$rc" != 137 ] || fail_a "snakemake hung: killed after ${FAIL_LIMIT}s"
[ "$rc" != 0 ] || fail_a "the workflow with a failing GPU job exited 0"
[ -f "$FAIL_WD/prepared.txt" ] || fail_a "the succeeding rule's output prepared.txt is missing"
cat "$FAIL_WD/prepared.txt"
grep -q "with python $ROOT/.venv/bin/python\$" "$FAIL_WD/prepared.txt" \
  || fail_a "a rule's shell did not find the venv's python first on PATH"
[ ! -e "$FAIL_WD/enhanced.txt" ] || fail_a "the failing rule's output enhanced.txt exists"
grep -q "Error in rule enhance_chunk" "$STATE/fail.log" || fail_a "no 'Error in rule enhance_chunk'"
[ -f "$FAIL_WD/enhance_chunk.job.txt" ] || fail_a "enhance_chunk never ran on the node"
grep -qF 'GRES=gpu:1(IDX:0)' "$FAIL_WD/enhance_chunk.job.txt" \
  || fail_a "enhance_chunk ran without a GPU: $(cat "$FAIL_WD/enhance_chunk.job.txt")"
echo "enhance_chunk's allocation:" \
  "$(grep -oE '(TRES|GRES|TresPerJob)=[^ ]*' "$FAIL_WD/enhance_chunk.job.txt" | tr '\n' ' ')"
echo "enhance_chunk's SLURM log (the expected failure):"
find "$FAIL_WD/slurm-logs" -path '*enhance_chunk*' -name '*.log' | sort | head -n 1 \
  | while read -r f; do show_file "$f"; done
echo "OK: the run failed (exit $rc) as it must; prepared.txt exists, enhanced.txt does not"
phase_done

if [ $# -eq 0 ]; then
  echo
  echo "=== part b: skipped (no snakemake arguments given for the demo)"
  exit 0
fi

phase "part b: demo"
DEMO_LOGS="$STATE/demo-slurm-logs"
rc=0
run_snakemake demo "$DEMO_LIMIT" --slurm-logdir "$DEMO_LOGS" "$@" || rc=$?
if [ "$rc" != 0 ]; then
  show_job_logs "$DEMO_LOGS"
  [ "$rc" != 137 ] || die "part b: snakemake killed after ${DEMO_LIMIT}s"
  die "part b: the demo failed (exit $rc)"
fi
echo "OK: the demo finished through SLURM"
phase_done
