"""Instructions per request of a whole ``datasvc serve`` process, uvicorn's protocol included.

    python -m bench.request_cost NAME ROOT PORT {id,email,create,batch_get} {open,tok}

Runs the checkout ROOT's service (PYTHONPATH=ROOT) under callgrind with instrumentation off against the
bench database (``python -m bench`` seeds it), sends 400 requests of warm-up from 8 keep-alive clients,
switches instrumentation on for N (env ``N``, default 1,600) more, and prints the instructions per request.
``batch_get``: POST :batchGet of ``BATCH`` (env, default 100) pseudo-random ids, as bench's batch_get
scenario. ``tok``: four callers' bearer tokens in turn, as ``datasvc-1w-tokens``. Two checkouts started
side by side compare to within ~1 % on a busy machine, where wall-clock figures do not; a figure taken at
another time does not compare: how many requests share an event-loop turn, and so the count per request,
moves with the machine's load (fewer on a loaded machine, where more requests share a turn).
``KEEP=1`` (env) keeps callgrind's file, for callgrind_annotate.
"""

import hashlib
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time

DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/datasvc_bench"
HASH = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
CLIENTS = 8
VALGRIND = ("valgrind", "--tool=callgrind", "--instr-atstart=no")


def _row(i: int) -> int:
    """The same pseudo-random user for ``i`` in every run: a sample, not a secret."""
    return random.Random(i).randint(1, 1000000)  # noqa: S311


def main() -> None:
    name, root, port, kind, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    n = int(os.environ.get("N", "1600"))
    batch = int(os.environ.get("BATCH", "100"))
    tokens = [f"bench-token-{i}" for i in range(1, 5)] if mode == "tok" else []
    env = dict(os.environ, DATABASE_URL=DATABASE_URL, DATASVC_ACCESS_LOG="on", PYTHONPATH=root)
    if tokens:
        env["DATASVC_AUTH_TOKENS"] = ";".join(
            f"bench{i} users:read,users:write,credentials:read {hashlib.sha256(t.encode()).hexdigest()}"
            for i, t in enumerate(tokens, 1)
        )
    try:
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/health")
    except OSError:
        pass
    else:
        sys.exit(f"port {port} already answers: another service would be measured")
    out = os.path.join(os.path.abspath(root), f"callgrind.{name}.out")  # the server runs in ROOT
    server = subprocess.Popen(
        [
            *VALGRIND,
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "datasvc",
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/health")
            conn.getresponse().read()
            break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                sys.exit("the service did not start within 300 s")
            time.sleep(0.5)
    auth = [{"Authorization": f"Bearer {t}"} for t in tokens] or [{}]
    emails = []
    if kind == "email":
        for i in range(200):
            conn.request("GET", f"/api/v1/users/{_row(i)}", headers=auth[0])
            emails.append(json.loads(conn.getresponse().read())["email"])

    def work(count: int, client: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for i in range(count):
            headers = dict(auth[(i + client) % len(auth)])
            if kind == "create":
                u = f"cost_{name}_{client}_{i}_{time.time_ns()}"
                body = json.dumps({"email": f"{u}@example.com", "username": u, "hashed_password": HASH})
                headers["Content-Type"] = "application/json"
                c.request("POST", "/api/v1/users/", body=body, headers=headers)
            elif kind == "email":
                c.request("GET", "/api/v1/users/by_email/" + emails[(i * 7 + client) % 200], headers=headers)
            elif kind == "batch_get":
                first = (i * CLIENTS + client) * batch
                body = json.dumps({"ids": [_row(first + k) for k in range(batch)]})
                headers["Content-Type"] = "application/json"
                c.request("POST", "/api/v1/users:batchGet", body=body, headers=headers)
            else:
                c.request(
                    "GET",
                    f"/api/v1/users/{_row(i * 13 + client)}",
                    headers=headers,
                )
            answer = c.getresponse()
            answer.read()
            assert answer.status in (200, 201), answer.status

    def burst(count: int) -> None:
        threads = [threading.Thread(target=work, args=(count // CLIENTS, k)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    burst(400)
    subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], capture_output=True, check=True)
    burst(n)
    subprocess.run(["callgrind_control", "-i", "off", str(server.pid)], capture_output=True, check=True)
    server.terminate()
    server.wait()
    with open(out) as f:
        # callgrind 3.19 writes `summary: 0` before `totals:` when instrumentation ends switched off.
        total = max(int(line.split()[1]) for line in f if line.startswith(("totals:", "summary:")))
    if os.environ.get("KEEP"):
        print(f"kept {out} (callgrind_annotate --inclusive=yes {out})")
    else:
        os.unlink(out)
    print(f"{name} {kind} {mode}: {total / n:,.0f} instructions per request")


if __name__ == "__main__":
    main()
