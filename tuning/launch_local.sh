#!/usr/bin/env bash
# Distributed Keras Tuner search on one machine: a chief (the oracle) and N workers on 127.0.0.1, using Keras
# Tuner's own protocol (KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT).
#
# Usage: tuning/launch_local.sh MODEL N_WORKERS [hep_keras.tune arguments...]
#   e.g. tuning/launch_local.sh compressor 2 --max-trials 12 --epochs 20
# Environment: KERASTUNER_ORACLE_PORT (default 8000), HEP_KERAS_TUNE_LOGS (default tuning/logs), PYTHON.
# The chief only hands out trials and, when all are done, writes the results and re-trains + exports the best
# configuration; the workers (tuner0 ... tuner<N-1>) run the trials. Running the same command again after a
# crash or kill resumes the search (finished trials are kept, the interrupted ones re-run).
# Several machines: see tuning/README.md (same command per host, KERASTUNER_ORACLE_IP = the chief's address).
set -euo pipefail
model=${1:?usage: tuning/launch_local.sh MODEL N_WORKERS [tune arguments]}
workers=${2:?usage: tuning/launch_local.sh MODEL N_WORKERS [tune arguments]}
shift 2
python=${PYTHON:-python}
logs=${HEP_KERAS_TUNE_LOGS:-tuning/logs}
export KERASTUNER_ORACLE_IP=${KERASTUNER_ORACLE_IP:-127.0.0.1}
export KERASTUNER_ORACLE_PORT=${KERASTUNER_ORACLE_PORT:-8000}
mkdir -p "$logs"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
KERASTUNER_TUNER_ID=chief "$python" -m hep_keras.tune "$model" "$@" > "$logs/chief.log" 2>&1 &
chief=$!
pids+=("$chief")
for i in $(seq 0 $((workers - 1))); do  # workers wait for the chief's server (gRPC wait_for_ready)
  KERASTUNER_TUNER_ID="tuner$i" "$python" -m hep_keras.tune "$model" "$@" > "$logs/tuner$i.log" 2>&1 &
  pids+=($!)
done
echo "chief $chief and $workers workers on $KERASTUNER_ORACLE_IP:$KERASTUNER_ORACLE_PORT; logs in $logs/" >&2
status=0
for pid in "${pids[@]:1}"; do wait "$pid" || status=$?; done
if [ "$status" -ne 0 ]; then  # a failed worker never tells the chief it left: stop the chief too
  echo "a worker failed (exit $status); stopping the chief. See $logs/tuner*.log" >&2
  kill "$chief" 2>/dev/null || true
fi
wait "$chief" || status=$?
tail -n 5 "$logs/chief.log" >&2
exit $status
