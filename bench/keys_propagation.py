#!/usr/bin/env python3
"""How long a key change takes to reach a second gateway when the config holds many keys.

Writes a config with N client keys (as key_sha256) and an admin identity, starts
`truckllm mock-upstream` and two `truckllm serve` processes sharing that config file, then five
times: creates a key through the admin API on A and times until B accepts it, revokes it on A
and times until B refuses it. Run through `bash bench/run.sh keys [N]`.
"""
import hashlib, json, os, socket, subprocess, sys, time, urllib.request, tempfile
BIN = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
d = tempfile.mkdtemp()
print(f"{N} client keys in the config")
admin = "admin-key-for-the-10k-bench"
mock = port()
lines = ["server:", "  admin_keys:", f"    - {{id: ops, key: \"{admin}\", role: admin}}",
         "llm_providers:", "  - id: mock", f"    base_url: \"http://127.0.0.1:{mock}/v1\"",
         "    keys: [{id: only, secret: secret-only}]", "    models: [\"gpt-4o-mini\"]", "api_keys:"]
for i in range(N):
    h = hashlib.sha256(f"client-key-{i}".encode()).hexdigest()
    lines.append(f"  - {{id: c{i}, key_sha256: \"{h}\"}}")
cfg = os.path.join(d, "config.yaml"); open(cfg, "w").write("\n".join(lines) + "\n")
procs = [subprocess.Popen([BIN, "mock-upstream", "--listen", f"127.0.0.1:{mock}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
a, b = port(), port()
for p in (a, b):
    procs.append(subprocess.Popen([BIN, "serve", "--config", cfg, "--listen", f"127.0.0.1:{p}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
def req(p, method, path, key, body=None):
    r = urllib.request.Request(f"http://127.0.0.1:{p}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
                               headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            raw = resp.read()
            try: return resp.status, json.loads(raw or b"null")
            except ValueError: return resp.status, None
    except urllib.error.HTTPError as e: return e.code, None
    except Exception: return 0, None
try:
    for p in (a, b):
        t = time.time()
        while req(p, "GET", "/health", "x")[0] != 200:
            if time.time() - t > 120: raise SystemExit("no start")
            time.sleep(0.05)
    results = []
    for run in range(5):
        t0 = time.monotonic()
        st, body = req(a, "POST", "/admin/keys", admin, {"id": f"new{run}"})
        t1 = time.monotonic()
        assert st == 201, st
        key = body["key"]
        while req(b, "GET", "/v1/models", key)[0] != 200:
            time.sleep(0.01)
        t2 = time.monotonic()
        st, _ = req(a, "DELETE", f"/admin/keys/new{run}", admin)
        t3 = time.monotonic()
        while req(b, "GET", "/v1/models", key)[0] != 401:
            time.sleep(0.01)
        t4 = time.monotonic()
        results.append((t1 - t0, t2 - t0, t3 - t2, t4 - t2))
        print(f"run {run}: create answered on A {t1-t0:.3f} s, key works on B {t2-t0:.3f} s; revoke answered {t3-t2:.3f} s, refused on B {t4-t2:.3f} s", flush=True)
    print("config bytes", os.path.getsize(cfg))
finally:
    for p in procs: p.kill()
