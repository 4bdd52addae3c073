#!/usr/bin/env bash
# One command per benchmark: builds the release binary, starts a private redis-server on a
# free loopback port, runs `truckllm bench WHAT` against it, and stops the server.
#   bash bench/run.sh store   [--seconds 5 --tasks 32 --batch 16]   store vs redis-benchmark
#   bash bench/run.sh gateway [--seconds 10 --rate 1000]            gateway vs direct upstream
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: bash bench/run.sh store|gateway [options]}
shift
cargo build --release -p truckllm --locked
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes \
  --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
trap 'kill "$(cat "$dir/redis.pid")" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/^Mem:/{print $2}') GiB, $(redis-server --version | cut -d' ' -f1-3)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
./target/release/truckllm --store "redis://127.0.0.1:$port" bench "$what" "$@"
