#!/usr/bin/env bash
# Run a grid as N shards of a SLURM job array, then merge the shard caches and build the full results.
#
#   bash examples/slurm_array.sh GRID N [WORK]      # on the login node; WORK defaults to runs/slurm
#
# submits (1) an array of N tasks, task I running `mtpa-engine run GRID --shard I/N` with its own cache file
# WORK/cache.shard-I-of-N.sqlite and its own output folder (RUN_DIR/shards/I-of-N), and (2) one job, started
# only once every task has succeeded, that merges the N caches into WORK/cache.sqlite and reruns the whole
# grid against it: zero model calls, the full results in the grid's output_dir, the Δ tables printed; then
# `mtpa-engine report RUN_DIR` works as after any run.
#
# A task that fails or is cut off by its time limit loses nothing: resubmit it alone (sbatch --array=I ...) and
# it resumes from its cache. Each task needs the environment the grid needs (API keys by environment variable,
# the venv below). Edit the #SBATCH lines to your cluster; a local-model grid wants --gres=gpu:1 per task.
#SBATCH --job-name=mtpa-shard
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%x-%A_%a.out
set -euo pipefail

VENV=${MTPA_VENV:-.venv}
engine() { "$VENV/bin/mtpa-engine" "$@"; }

case "${1:-}" in
shard) # inside the array: shard-I of N
    grid=$2 n=$3 work=$4
    engine run "$grid" --shard "$SLURM_ARRAY_TASK_ID/$n" --cache "$work/cache.shard-$SLURM_ARRAY_TASK_ID-of-$n.sqlite" --no-progress
    ;;
merge) # after the whole array: one cache, then the full results from it
    grid=$2 n=$3 work=$4
    shards=()
    for ((i = 0; i < n; i++)); do shards+=("$work/cache.shard-$i-of-$n.sqlite"); done
    engine cache merge "$work/cache.sqlite" "${shards[@]}"
    engine run "$grid" --cache "$work/cache.sqlite" --no-progress
    ;;
*) # on the login node: submit both
    grid=${1:?usage: slurm_array.sh GRID N [WORK]} n=${2:?usage: slurm_array.sh GRID N [WORK]} work=${3:-runs/slurm}
    mkdir -p "$work"
    array=$(sbatch --parsable --array="0-$((n - 1))" "$0" shard "$grid" "$n" "$work")
    sbatch --parsable --job-name=mtpa-merge --output="slurm-%x-%j.out" --dependency="afterok:$array" "$0" merge "$grid" "$n" "$work"
    echo "submitted shards $array (0-$((n - 1))) and their merge; results: mtpa-engine report <the grid's output_dir>"
    ;;
esac
