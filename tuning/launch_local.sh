#!/usr/bin/env bash
# Distributed Keras Tuner search on one machine: a chief (the oracle) and N workers on 127.0.0.1.
# Usage: tuning/launch_local.sh MODEL N_WORKERS [extra hep_keras.tune arguments...]
# On a cluster, run the same command on every node with KERASTUNER_ORACLE_IP set to the chief's address.
set -euo pipefail
model=${1:?model (vae, ae, compressor, diffusion)}
workers=${2:-2}
shift 2 || true
export KERASTUNER_ORACLE_IP=${KERASTUNER_ORACLE_IP:-127.0.0.1}
export KERASTUNER_ORACLE_PORT=${KERASTUNER_ORACLE_PORT:-8000}
mkdir -p tuning/logs
KERASTUNER_TUNER_ID=chief python -m hep_keras.tune "$model" "$@" > tuning/logs/chief.log 2>&1 &
chief=$!
sleep 5
pids=()
for i in $(seq 0 $((workers - 1))); do
  KERASTUNER_TUNER_ID="tuner$i" python -m hep_keras.tune "$model" "$@" > "tuning/logs/tuner$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
wait "$chief" || status=$?
echo "chief log: tuning/logs/chief.log (best_config.json under the tuning directory)"
exit $status
