#!/usr/bin/env bash
# Training on a Slurm cluster, as mmdet's tools/slurm_train.sh:
#   [GPUS=16] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# One task per GPU: GPUS tasks in all, GPUS_PER_NODE per node (GPUS=16 GPUS_PER_NODE=8 is two
# nodes), each with CPUS_PER_TASK cores for its data workers. SRUN_ARGS adds srun options
# (e.g. "--quotatype=auto", "--time=2-00:00:00"). PORT (default 29500) is the rendezvous port
# on the first node; MASTER_PORT, if set, wins. GPUs use NCCL (mmengine's slurm set-up).
# CPU-only nodes: GPUS counts processes, set GRES= (empty) to drop --gres; tools/train.py then
# derives RANK/WORLD_SIZE/MASTER_ADDR from the SLURM_* variables and sets up gloo itself.
set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES-gpu:${GPUS_PER_NODE}}
SRUN_ARGS=${SRUN_ARGS:-""}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python
export MASTER_PORT=${MASTER_PORT:-${PORT:-29500}}

# srun passes the environment (PYTHONPATH, MASTER_PORT, ...) on to every task.
PYTHONPATH="$ROOT":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    ${GRES:+--gres="${GRES}"} \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PY" -u "$ROOT/tools/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher="slurm" "${@:5}"
