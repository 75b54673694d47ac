#!/usr/bin/env bash
# The prepared GPU benchmark run, in one command (docs/benchmarks.md, "On a GPU").
#
#   benchmarks/gpu/run.sh OUT_DIR              on the GPU machine (make bench-gpu)
#   benchmarks/gpu/run.sh --rehearse OUT_DIR   the same steps on this CPU, JAX only,
#                                              tiny sizes, synthetic data (~1 minute)
#
# Prepare with `make gpu-carry` (wheels, data and the commit into .gpu-carry/,
# which must travel with the tree). The run installs the carried wheels when Keras
# is not importable, then, with KERAS_BACKEND=jax and then torch: the layer
# benchmark (reference shape and a short grid; forward and training; float32 and
# bfloat16), `fastconv bench` on MNIST and on the carried CIFAR-10 subset (large
# batch, mixed bfloat16), and the trained checkpoints' inference speedup if
# benchmarks/models/*.keras exist. Each part is bounded by `timeout` so the whole
# run ends within 8 minutes; a part that fails or times out is logged, and the
# run goes on. OUT_DIR gets at most 8 files, none in a subfolder:
#   env.json  log.txt  layers-<backend>.json  bench-<backend>.json
#   checkpoints-<backend>.json (only when checkpoints exist)
set -euo pipefail

rehearse=0
if [[ "${1:-}" == "--rehearse" ]]; then
    rehearse=1
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: $0 [--rehearse] OUT_DIR" >&2
    exit 2
fi
out=$1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
carry=$repo/.gpu-carry
mkdir -p "$out"
out=$(cd "$out" && pwd)
log=$out/log.txt
: >"$log"
cd "$repo"

python=${PYTHON:-python3}
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export FASTCONV_DATA_DIR=$carry/data
FASTCONV_AUTOTUNE_CACHE=$(mktemp -d)/autotune.json # fresh choices, made in the run
export FASTCONV_AUTOTUNE_CACHE
failures=0
run_start=$SECONDS

say() { echo "$*" | tee -a "$log"; }

# part NAME SECONDS COMMAND...: runs COMMAND under `timeout`, its output into the
# log, and prints its elapsed time and status; never stops the run.
part() {
    local name=$1 limit=$2 start=$SECONDS status=0
    shift 2
    say "== $name (limit ${limit} s)"
    timeout --kill-after=5 "$limit" "$@" >>"$log" 2>&1 || status=$?
    local took=$((SECONDS - start))
    if [[ $status -eq 0 ]]; then
        say "== $name: ok in ${took} s"
    else
        failures=$((failures + 1))
        [[ $status -eq 124 || $status -eq 137 ]] && status="$status (timed out)"
        say "== $name: FAILED, exit $status, after ${took} s"
    fi
}

# Seconds per part; each can be overridden from the environment. On the GPU:
# 30 (env) + 2 x (60 + 60 + 70 + 15) = 440 s at most, plus the wheel install.
# The rehearsal's parts take 20 and 35 s on a quiet 2-core CPU: its limits only
# catch a hang, and leave room for a busy machine (150 s was once too little
# for the MNIST part on a 2-core machine shared with a training job).
part_s=(60 60 70 15)
[[ $rehearse -eq 1 ]] && part_s=(300 300 300 60)
layers_s=${FASTCONV_GPU_LAYERS_S:-${part_s[0]}}
mnist_s=${FASTCONV_GPU_MNIST_S:-${part_s[1]}}
cifar10_s=${FASTCONV_GPU_CIFAR10_S:-${part_s[2]}}
checkpoints_s=${FASTCONV_GPU_CHECKPOINTS_S:-${part_s[3]}}
# CIFAR-10 without the converted variants: decomposing the VGG's kernels with
# TensorLy takes about a minute of CPU, whatever the GPU.
cifar10_variants=(--variants factorized stacked bottleneck wide separable cp tucker)
if [[ $rehearse -eq 1 ]]; then
    mode=rehearse
    backends=(jax)
    datasets=(mnist)
    export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
    layer_args=(--rehearse)
    bench_args=(--train-subset all --test-subset all --epochs 1 --batch-size 64
        --inference-batch-size 64 --repeats 2 --variants cp converted-cp)
    # The committed CIFAR-10 checkpoints at batch 1024 take minutes on a CPU.
    checkpoint_args=(--batches 1 --warmup 0 --repeats 1)
else
    mode=gpu
    backends=(jax torch)
    datasets=(mnist cifar10)
    layer_args=(--budget-s 35)
    bench_args=(--train-subset all --test-subset all --epochs 2 --batch-size 512
        --inference-batch-size 1024 --repeats 10 --precision mixed_bfloat16)
    checkpoint_args=()
fi

# data_args DATASET: where bench_run.py gets the dataset's images; prints nothing
# and fails when the carried file is missing.
data_args() {
    if [[ $mode == rehearse ]]; then
        echo "--synthetic 256 128"
    elif [[ $1 == mnist && -f $carry/data/mnist.npz ]]; then
        echo ""
    elif [[ $1 == cifar10 && -f $carry/data/cifar10-subset.npz ]]; then
        echo "--data $carry/data/cifar10-subset.npz"
    else
        return 1
    fi
}

say "fastconv GPU run ($mode) into $out, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
if ! "$python" -c "import keras, tensorly" >/dev/null 2>&1; then
    if ! compgen -G "$carry/wheels/*.whl" >/dev/null; then
        say "Keras or TensorLy is missing and $carry/wheels has no wheels: run make gpu-carry"
        exit 1
    fi
    start=$SECONDS
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/fastconv-site "$carry"/wheels/*.whl >>"$log" 2>&1
    export PYTHONPATH=$PYTHONPATH:/tmp/fastconv-site
    say "== installed the carried wheels in $((SECONDS - start)) s"
fi
part env 30 "$python" -m benchmarks.gpu.env_info --out "$out/env.json" --mode "$mode"

for backend in "${backends[@]}"; do
    export KERAS_BACKEND=$backend
    part "$backend: layers" "$layers_s" "$python" -m benchmarks.gpu.layer_run \
        --out "$out/layers-$backend.json" "${layer_args[@]}"
    for dataset in "${datasets[@]}"; do
        if ! source_args=$(data_args "$dataset"); then
            say "== $backend: bench $dataset: skipped: its data is not in $carry/data (make gpu-carry)"
            continue
        fi
        limit_name=${dataset}_s
        extra=()
        [[ $mode == gpu && $dataset == cifar10 ]] && extra=("${cifar10_variants[@]}")
        # shellcheck disable=SC2086  # source_args is words without spaces
        part "$backend: bench $dataset" "${!limit_name}" "$python" \
            -m benchmarks.gpu.bench_run --dataset "$dataset" \
            --out "$out/bench-$backend.json" $source_args -- "${bench_args[@]}" \
            "${extra[@]}" --no-progress
    done
    part "$backend: checkpoints" "$checkpoints_s" "$python" \
        -m benchmarks.gpu.checkpoints --out "$out/checkpoints-$backend.json" \
        "${checkpoint_args[@]}"
done

say "done in $((SECONDS - run_start)) s, $failures part(s) failed; files: $(ls "$out" | tr '\n' ' ')"
