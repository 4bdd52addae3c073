#!/usr/bin/env bash
# One command per benchmark: builds the release binary, starts a private redis-server on a
# free loopback port, runs `truckllm bench WHAT` against it, and stops the server.
#   bash bench/run.sh store   [--seconds 5 --tasks 32 --batch 16 --rollup-keep-secs 0]  store vs redis-benchmark
#   bash bench/run.sh store --store postgres://USER@HOST:PORT/DB [options]
#                                                                   the same workloads on the Redis
#                                                                   store and on PostgreSQL, same run
#   bash bench/run.sh gateway [--seconds 10 --rate 1000 --rollup-keep-secs 0]  gateway vs direct upstream
#                                                                   and vs nginx as a bare proxy
#   bash bench/run.sh http    [--seconds 5]                         HTTP store (client -> storage
#                                                                   server -> Redis) vs Redis direct
#   bash bench/run.sh outage  [--rate 200 --down 10]                a Redis outage under gateway load
#                                                                   (starts and kills its own Redis)
#   bash bench/run.sh logs    [--mb 50]                             log search and stats speed
#   bash bench/run.sh streams [--streams 9000 --chunk-interval-ms 2000 --chunks 60]
#                                                                   many slow streams held open
#                                                                   through the gateway (memory
#                                                                   store): its RSS and open files
#   bash bench/run.sh keys    [10000]                              a key created and revoked through
#                                                                   the admin API on one gateway:
#                                                                   when a second one applies it
#   bash bench/run.sh markers                                       Redis memory per applied batch
#                                                                   id: hash field vs key per id
# BENCH_PROFILE=dev builds and runs the debug binary instead (figures then compare backends
# within one run only, never with release figures).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: bash bench/run.sh store|gateway|http|outage|logs|streams|keys|markers [options]}
shift
if [ "${BENCH_PROFILE:-release}" = dev ]; then
  cargo build -p truckllm --locked
  bin=./target/debug/truckllm
else
  cargo build --release -p truckllm --locked
  bin=./target/release/truckllm
fi
if [ "$what" = gateway ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  # nginx as a bare reverse proxy is the gateway bench's yardstick.
  sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends nginx
fi
if [ "$what" = streams ]; then
  echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/^Mem:/{print $2}') GiB, open files $(ulimit -Hn) (hard)"
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  exec "$bin" bench streams "$@"
fi
if [ "$what" = keys ]; then
  echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/^Mem:/{print $2}') GiB"
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  exec python3 bench/keys_propagation.py "$bin" "$@"
fi
if [ "$what" = outage ] || [ "$what" = logs ]; then
  echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(redis-server --version | cut -d' ' -f1-3)"
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  exec "$bin" bench "$what" "$@"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes \
  --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
trap 'kill "$(cat "$dir/redis.pid")" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/^Mem:/{print $2}') GiB, $(redis-server --version | cut -d' ' -f1-3)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
if [ "$what" = markers ]; then
  # 10,000 ids shaped as the resilient wrapper makes them, once as fields of one hash (the
  # layout in use) and once as a key each with an expiry (the layout before); growth of
  # used_memory per id.
  used() { redis-cli -p "$port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
  ids() { python3 -c 'for i in range(10000): print(f"r{0x1234abcd5678ef90:016x}-{i}")'; }
  before=$(used)
  ids | awk '{printf "HSET usage-batch:{openai:key1}:g979 %s 1\n", $1}' | redis-cli -p "$port" >/dev/null
  redis-cli -p "$port" pexpire 'usage-batch:{openai:key1}:g979' 4200000 >/dev/null
  middle=$(used)
  ids | awk '{printf "SET usage-batch:{openai:key1}:%s 1 PX 3600000\n", $1}' | redis-cli -p "$port" >/dev/null
  after=$(used)
  echo "bytes per applied id, hash field (in use): $(( (middle - before) / 10000 ))"
  echo "bytes per applied id, key with expiry (before): $(( (after - middle) / 10000 ))"
  exit
fi
# `store --store URL`: the workloads on the private Redis, then on URL, and their ratios.
other=""
args=()
while [ $# -gt 0 ]; do
  if [ "$1" = --store ] && [ "$what" = store ]; then other=${2:?--store needs a URL}; shift 2
  else args+=("$1"); shift; fi
done
set -- ${args[@]+"${args[@]}"}
if [ -n "$other" ]; then
  echo "== Redis: RedisStore"
  "$bin" --store "redis://127.0.0.1:$port" bench store "$@" | tee "$dir/redis.txt"
  echo "== $(printf '%s' "$other" | sed -E 's#://([^:@/]*):[^@/]*@#://\1:***@#')"
  "$bin" --store "$other" bench store "$@" | tee "$dir/other.txt"
  for w in "increment, unbatched" "increment_many, batch" "window(60s), unbatched" \
    "window_many(60s), batch" "reserve (req/min" "reserve, coalesced"; do
    r=$(grep -F "| $w" "$dir/redis.txt" | head -1 | awk -F'|' '{print $3}')
    o=$(grep -F "| $w" "$dir/other.txt" | head -1 | awk -F'|' '{print $3}')
    awk -v w="$w" -v r="$r" -v o="$o" 'BEGIN { printf "ratio other/redis, %s: %.2f\n", w, o / r }'
  done
  exit
fi
if [ "$what" != http ]; then
  "$bin" --store "redis://127.0.0.1:$port" bench "$what" "$@"
  exit
fi
# http: a storage server on the same Redis, then the store workloads direct and through it.
sport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'tokens:\n  - name: bench\n    token: "bench-token"\n    scopes: [read, write]\n' > "$dir/tokens.yaml"
"$bin" storage-server --insecure-plain-http --listen "127.0.0.1:$sport" \
  --store "redis://127.0.0.1:$port" --tokens "$dir/tokens.yaml" > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; kill "$(cat "$dir/redis.pid")" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q "storage server on" "$dir/server.log" && break; sleep 0.05; done
echo "== direct: RedisStore"
"$bin" --store "redis://127.0.0.1:$port" bench store "$@" | tee "$dir/direct.txt"
echo "== through the storage server: HttpStore -> storage-server -> Redis"
"$bin" --store "http://127.0.0.1:$sport" --store-token bench-token bench store "$@" | tee "$dir/http.txt"
for w in "increment, unbatched" "increment_many, batch 16" "window(60s), unbatched" "reserve"; do
  d=$(grep -F "| $w" "$dir/direct.txt" | head -1 | awk -F'|' '{print $3}')
  h=$(grep -F "| $w" "$dir/http.txt" | head -1 | awk -F'|' '{print $3}')
  awk -v w="$w" -v d="$d" -v h="$h" 'BEGIN { printf "ratio http/direct, %s: %.2f\n", w, h / d }'
done
