#!/usr/bin/env bash
# One command for the store benchmark: builds the release binary, starts a private
# redis-server on a free loopback port, runs `truckllm bench store` against it (which also runs
# redis-benchmark on the same server with the same Lua script), and stops the server.
# Extra arguments go to `truckllm bench store` (e.g. --seconds 10 --tasks 32 --batch 16).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p truckllm --locked
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes \
  --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
trap 'kill "$(cat "$dir/redis.pid")" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(redis-server --version | cut -d' ' -f1-3)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
./target/release/truckllm --store "redis://127.0.0.1:$port" bench store "$@"
