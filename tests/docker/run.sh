#!/usr/bin/env bash
# `make docker-test`: build the image and use it as a user would, then report its size.
#   - starts a Docker engine when none runs and we are root (CI machines), stops it after;
#   - runs the demo in the image as an unprivileged user, with a temporary build/ mounted, and
#     checks every file comes back owned by that user;
#   - checks docker-bitstream refuses a missing Xilinx folder at once, before building anything;
#   - checks the image holds the CPU build of torch and nothing of CUDA;
#   - writes build/bench/docker.json (image size, build and demo times).
# Pass-through: CA_CERT, TORCH_WHEEL, FINN_DEPS_FETCH (default 0 here: the checks need no
# FINN+ dependency), DOCKER_BUILD_OPTS, IMAGE (default maskbnn-finn:test).
set -euo pipefail
cd "$(dirname "$0")/../.."
# every make call below reads these (Make's ?= takes them from the environment)
export IMAGE=${IMAGE:-maskbnn-finn:test}
export FINN_DEPS_FETCH=${FINN_DEPS_FETCH:-0}
# the engine started below has no bridge: builds use the host's network
export DOCKER_BUILD_OPTS="--network host ${DOCKER_BUILD_OPTS:-}"
[ -z "${CA_CERT:-}" ] || export CA_CERT
[ -z "${TORCH_WHEEL:-}" ] || export TORCH_WHEEL
image=$IMAGE
started=""
fail() { echo "docker-test: FAIL: $*" >&2; exit 1; }

if ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || fail "no Docker engine is running (start dockerd, or run as root to let this script start one)"
    if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
        apt-get update -qq && apt-get install -y -qq docker.io debootstrap >/dev/null
    fi
    echo "docker-test: starting a Docker engine (no bridge, no iptables: builds use the host network)"
    dockerd --iptables=false --bridge=none >/tmp/maskbnn-dockerd.log 2>&1 &
    started=$!
    trap 'kill "$started" 2>/dev/null; wait "$started" 2>/dev/null || true' EXIT
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || fail "the Docker engine did not start (see /tmp/maskbnn-dockerd.log)"
fi

t0=$(date +%s)
make --no-print-directory docker-image
build_s=$(( $(date +%s) - t0 ))

work=$(mktemp -d)
trap 'rm -rf "$work"; [ -z "$started" ] || { kill "$started" 2>/dev/null; wait "$started" 2>/dev/null || true; }' EXIT
# root would prove nothing about ownership: run as an unprivileged user then
if [ "$(id -u)" = 0 ]; then uid=4242; gid=4242; else uid=$(id -u); gid=$(id -g); fi
mkdir -p "$work/build" "$work/bitstreams"
chown "$uid:$gid" "$work/build" "$work/bitstreams"

echo "docker-test: demo in the image as $uid:$gid"
t0=$(date +%s)
make --no-print-directory docker-demo DOCKER_USER="$uid:$gid" DOCKER_OUT="$work" 2>&1 \
    | tee "$work/demo.log"
demo_s=$(( $(date +%s) - t0 ))
nfiles=$(find "$work/build" | wc -l)
[ "$nfiles" -gt 50 ] || fail "the demo left only $nfiles entries in build/"
foreign=$(find "$work/build" "$work/bitstreams" ! -uid "$uid" | head -5)
[ -z "$foreign" ] || fail "files not owned by $uid: $foreign"
grep -q "mounted from the host" "$work/demo.log" \
    || fail "inside the container the missing-tool message does not speak of the Xilinx mount"

echo "docker-test: docker-bitstream without a Xilinx folder"
t0=$(date +%s)
set +e
make --no-print-directory docker-bitstream XILINX_ROOT="$work/no-xilinx" >"$work/bs.log" 2>&1
rc=$?
set -e
cat "$work/bs.log"
[ "$rc" != 0 ] || fail "docker-bitstream without Xilinx exited 0"
[ $(( $(date +%s) - t0 )) -le 10 ] || fail "docker-bitstream took more than 10 s to refuse"
grep -q "XILINX_ROOT=" "$work/bs.log" || fail "the refusal does not say what to pass"
[ ! -e "$work/no-xilinx" ] || fail "a missing Xilinx folder was created"

echo "docker-test: CPU torch only, commands and help"
torch=$(docker run --rm "$image" python -c "import torch; print(torch.__version__, torch.version.cuda)")
[[ "$torch" == *"+cpu None" ]] || fail "torch in the image: $torch"
cuda=$(docker run --rm "$image" bash -c "ls .venv/lib/python3.11/site-packages | grep -ci -e '^nvidia' -e '^triton' || true")
[ "$cuda" = 0 ] || fail "CUDA packages in the image ($cuda)"
docker run --rm "$image" help | grep -q "container" || fail "help"

size=$(docker image inspect -f '{{.Size}}' "$image")
mkdir -p build/bench
python3 - "$image" "$size" "$build_s" "$demo_s" <<'PY'
import json, sys
image, size, build_s, demo_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rec = {"image": image, "size_bytes": size, "size_gb": round(size / 1e9, 2),
       "build_s": build_s, "demo_s": demo_s}
open("build/bench/docker.json", "w").write(json.dumps(rec, indent=2) + "\n")
print(f"docker-test: PASS: image {image} {rec['size_gb']} GB, build {build_s} s, demo {demo_s} s")
PY
