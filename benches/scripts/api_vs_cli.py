"""The driver of api_vs_cli.sh: see there. Standard library only."""

import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from datetime import datetime, timezone

ROOT = os.getcwd()
LOGGING_APP = "fixtures/java/logging-app/src/io/cameleer/fixtures/logging/LoggingApp.java"
AGENT = "fixtures/java/agent/src/io/cameleer/agent/CameleerAgent.java"
MAIN_CLASS = "io.cameleer.fixtures.logging.LoggingApp"
AGENT_CLASS = "io.cameleer.agent.CameleerAgent"
FILLER = 4 << 20
TARGET = 0.35
# Ours: polls of the logs route while the new version comes up.
POLL = 0.02


def now_ns():
    return time.time_ns()


def ms(ns):
    return ns / 1e6


def run(*args, check=True, capture=True):
    p = subprocess.run(args, capture_output=capture, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rfc3339_ns(text):
    """Nanoseconds since the epoch of an RFC 3339 time with up to 9 decimals."""
    text = text.replace("Z", "+00:00")
    main, _, rest = text.partition(".")
    frac, zone = "", ""
    if rest:
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, zone = rest[:i], rest[i:]
    else:
        for sep in ("+", "-"):
            at = main.rfind(sep)
            if at > 10:
                main, zone = main[:at], main[at:]
                break
    base = datetime.fromisoformat(main + (zone or "+00:00"))
    return int(base.timestamp()) * 10**9 + int((frac + "000000000")[:9] or 0)


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------- fixtures

class Jars:
    """The agent JAR and one runnable fat JAR per version."""

    def __init__(self, work):
        self.work = work
        classes = os.path.join(work, "classes")
        run("javac", "--release", "17", "-nowarn", "-d", classes, LOGGING_APP, AGENT)
        self.agent = os.path.join(work, "agent.jar")
        manifest = os.path.join(work, "agent.mf")
        with open(manifest, "w") as f:
            f.write(f"Premain-Class: {AGENT_CLASS}\nAgent-Class: {AGENT_CLASS}\n")
        run("jar", "cfm", self.agent, manifest, "-C", classes, "io/cameleer/agent")
        fat = os.path.join(work, "fat.jar")
        run(os.environ["MAKE_FAT_JAR"], fat)
        self.base = os.path.join(work, "base.jar")
        with zipfile.ZipFile(fat) as src, zipfile.ZipFile(self.base, "w") as out:
            out.writestr("META-INF/MANIFEST.MF",
                         f"Manifest-Version: 1.0\r\nMain-Class: {MAIN_CLASS}\r\n"
                         "Created-By: cameleer-benches\r\n\r\n",
                         compress_type=zipfile.ZIP_DEFLATED)
            app_dir = os.path.join(classes, "io/cameleer/fixtures/logging")
            for name in sorted(os.listdir(app_dir)):
                out.write(os.path.join(app_dir, name),
                          f"io/cameleer/fixtures/logging/{name}",
                          compress_type=zipfile.ZIP_DEFLATED)
            for info in src.infolist():
                if info.filename != "META-INF/MANIFEST.MF":
                    out.writestr(info, src.read(info.filename),
                                 compress_type=info.compress_type)

    def version(self, seed):
        """A new JAR: the base plus FILLER new random bytes (STORED)."""
        path = os.path.join(self.work, "app.jar")
        shutil.copyfile(self.base, path)
        rng = random.Random(seed)
        with zipfile.ZipFile(path, "a") as z:
            z.writestr(f"BOOT-INF/classes/build-{seed}.bin", rng.randbytes(FILLER),
                       compress_type=zipfile.ZIP_STORED)
        with open(path, "rb") as f:
            data = f.read()
        with zipfile.ZipFile(path) as z:
            entries = len(z.infolist())
        return data, entries


# ---------------------------------------------------------------- engine

def container_events(since_ns, name_prefix):
    """{name: {action: time_ns}} of create/start events of containers whose
    name starts with `name_prefix`, since `since_ns`."""
    out = run("docker", "events", "--since", f"{since_ns / 1e9:.9f}",
              "--until", f"{time.time():.9f}", "--filter", "type=container",
              "--filter", "event=create", "--filter", "event=start",
              "--format", "{{json .}}")
    found = {}
    for line in out.splitlines():
        e = json.loads(line)
        name = e.get("Actor", {}).get("Attributes", {}).get("name", "")
        if name.startswith(name_prefix):
            found.setdefault(name, {})[e.get("Action") or e.get("status")] = int(e["timeNano"])
    return found


def line_time(container, needle):
    """The engine's timestamp of the first line equal to `needle`."""
    out = run("docker", "logs", "-t", container)
    for line in out.splitlines():
        ts, _, text = line.partition(" ")
        if text == needle:
            return rfc3339_ns(ts)
    raise RuntimeError(f"{container} has no line {needle!r}")


def marker(version):
    return f"[app] args=[v{version}]"


# ---------------------------------------------------------------- ours

class Registry:
    """Debian's docker-registry on loopback, storage in `work`."""

    def __init__(self, work):
        self.port = free_port()
        storage = os.path.join(work, "registry")
        config = os.path.join(work, "registry.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: cameleer-bench\n"
                    "health:\n  storagedriver:\n    enabled: false\n")
        self.log = open(os.path.join(work, "registry.log"), "w")
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", config],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("docker-registry did not start")
                time.sleep(0.05)
        self.host = f"127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Server:
    """The example server on loopback with a data dir of its own."""

    def __init__(self, work, route, agent, registry):
        self.data = os.path.join(work, f"data-{route}")
        args = [os.environ["SERVER"], "--listen", "127.0.0.1:0", "--data-dir", self.data,
                "--agent-jar", agent]
        if registry:
            args += ["--registry", f"http://{registry.host}"]
        self.log = open(os.path.join(work, f"server-{route}.log"), "w")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, env=env)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the server did not start: see {self.log.name}")
        self.url = line.split("listening on ")[1].strip()
        token = os.path.join(self.data, "admin-token")
        self.headers = {}
        if os.path.isfile(token):
            with open(token) as f:
                self.headers["Authorization"] = f"Bearer {f.read().strip()}"

    def call(self, method, path, body=None, content_type="application/json"):
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers=dict(self.headers))
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Ours:
    def __init__(self, server, tenant):
        self.server = server
        self.tenant = tenant
        self.base = f"/api/v1/tenants/{tenant}/apps/orders/envs/dev"
        self.prefix = f"cameleer-{tenant}-dev-orders-v"
        self.image = None

    def new_version(self, version, jar):
        t0 = now_ns()
        status, body = self.server.call("PUT", self.base + "/artifacts", jar,
                                        "application/java-archive")
        t1 = now_ns()
        if status != 201:
            raise RuntimeError(f"upload: {status} {body[:300]!r}")
        sha = json.loads(body)["sha256"]
        config = {"args": [f"v{version}"], "health": "none", "start_timeout_secs": 60,
                  "resources": {"memory_mb": 256, "cpu_millis": 1000}}
        status, body = self.server.call(
            "POST", self.base + "/deployments",
            json.dumps({"artifact": sha, "config": config}).encode())
        t2 = now_ns()
        if status != 202:
            raise RuntimeError(f"deploy: {status} {body[:300]!r}")
        deployment = json.loads(body)["id"]
        since = datetime.fromtimestamp(t0 // 10**9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        needle = marker(version)
        deadline = time.time() + 120
        while True:
            status, body = self.server.call("GET", f"{self.base}/logs?since={since}")
            if status == 200 and any(
                    json.loads(l).get("line") == needle for l in body.splitlines() if l):
                break
            if time.time() > deadline:
                raise RuntimeError(f"ours: no {needle!r} in 120 s")
            time.sleep(POLL)
        t_end = now_ns()
        # Not timed: where the time went.
        history = self.history(deployment)
        name = f"{self.prefix}{version}"
        events = container_events(t0, name).get(name, {})
        line = line_time(name, needle)
        building, starting = history.get("BUILDING"), history.get("STARTING")
        self.image = self.image_of(deployment)
        self.settle(deployment, name)
        return {
            "total": t_end - t0,
            "upload + validation": t1 - t0,
            "deploy call": t2 - t1,
            "to build": building - t2,
            "image": starting - building,
            "to container create": events["create"] - starting,
            "create to start": events["start"] - events["create"],
            "JVM start to line": line - events["start"],
            "line to client": t_end - line,
        }

    def settle(self, deployment, name):
        """Not timed: waits until the deployment is RUNNING and the older
        version's container is gone, as the CLI side removes its previous
        container before the next round; otherwise the next version's
        deploy would wait for this one's rollout to end."""
        deadline = time.time() + 60
        while time.time() < deadline:
            running = "RUNNING" in self.history(deployment)
            names = run("docker", "ps", "-a", "--filter", f"name=^/{self.prefix}",
                        "--format", "{{.Names}}").split()
            if running and names == [name]:
                return
            time.sleep(0.1)
        raise RuntimeError(f"deployment {deployment} did not settle in 60 s")

    def history(self, deployment):
        status, body = self.server.call("GET", self.base + "/deployments")
        for d in json.loads(body):
            if d["id"] == deployment:
                return {c["status"]: rfc3339_ns(c["at"]) for c in d["history"]}
        raise RuntimeError(f"no deployment {deployment}")

    def image_of(self, deployment):
        status, body = self.server.call("GET", self.base + "/deployments")
        for d in json.loads(body):
            if d["id"] == deployment:
                return d["image"]
        return None

    def finish(self):
        self.server.call("POST", self.base + "/stop")


# ---------------------------------------------------------------- theirs

HARDENING = [
    "--user", "10001:10001", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
    "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m,mode=1777,noexec",
    "--ipc", "private", "--pids-limit", "1024", "--memory", "256m", "--memory-swap", "256m",
    "--cpus", "1", "--restart", "no", "--log-driver", "json-file",
    "--log-opt", "max-size=10m", "--log-opt", "max-file=3",
]


class Theirs:
    def __init__(self, work, tenant, base_image, entrypoint, agent, registry):
        self.dir = os.path.join(work, "context")
        os.makedirs(self.dir)
        shutil.copyfile(agent, os.path.join(self.dir, "agent.jar"))
        agent_path = next(a.split(":", 1)[1].split("=")[0] for a in entrypoint
                          if a.startswith("-javaagent:"))
        jar_path = entrypoint[entrypoint.index("-jar") + 1]
        with open(os.path.join(self.dir, "Dockerfile"), "w") as f:
            f.write(f"FROM {base_image}\nCOPY agent.jar {agent_path}\nCOPY app.jar {jar_path}\n"
                    f"WORKDIR {os.path.dirname(jar_path)}\nUSER 10001:10001\n"
                    f"ENTRYPOINT {json.dumps(entrypoint)}\n")
        self.label = f"io.cameleer.tenant={tenant}"
        self.network = f"{tenant}-cli"
        run("docker", "network", "create", "--label", self.label, self.network)
        self.repository = (f"{registry.host}/{tenant}/cli" if registry else f"{tenant}/cli")
        self.push = registry is not None
        self.prefix = f"{tenant}-cli-v"
        self.previous = None

    def new_version(self, version, jar):
        tag = f"{self.repository}:v{version}"
        name = f"{self.prefix}{version}"
        t0 = now_ns()
        with open(os.path.join(self.dir, "app.jar"), "wb") as f:
            f.write(jar)
        image = run("docker", "build", "-q", "-t", tag, self.dir).strip()
        t1 = now_ns()
        if self.push:
            run("docker", "push", "-q", tag)
            digest = run("docker", "image", "inspect", tag, "--format",
                         "{{index .RepoDigests 0}}").strip()
            image = digest
        t2 = now_ns()
        cid = run("docker", "run", "-d", "--name", name, "--label", self.label,
                  "--network", self.network, *HARDENING, image, f"v{version}").strip()
        t3 = now_ns()
        needle = marker(version)
        follow = subprocess.Popen(["docker", "logs", "-f", cid], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        found = False
        for line in follow.stdout:
            if line.rstrip("\n") == needle:
                found = True
                break
        t_end = now_ns()
        follow.kill()
        follow.wait()
        if not found:
            raise RuntimeError(f"theirs: docker logs -f ended without {needle!r}")
        events = container_events(t0, name).get(name, {})
        line = line_time(cid, needle)
        if self.previous:
            old_id, old_tag = self.previous
            run("docker", "rm", "-f", old_id)
            run("docker", "rmi", old_tag)
        self.previous = (cid, tag)
        times = {
            "total": t_end - t0,
            "image": t1 - t0,
            "push": t2 - t1,
            "to container create": events["create"] - t2,
            "create to start": events["start"] - events["create"],
            "JVM start to line": line - events["start"],
            "line to client": t_end - line,
        }
        if not self.push:
            del times["push"]
        return times

    def finish(self):
        if self.previous:
            run("docker", "rm", "-f", self.previous[0], check=False)
            run("docker", "rmi", self.previous[1], check=False)
        run("docker", "network", "rm", self.network, check=False)


# ---------------------------------------------------------------- the run

def report(route, ours, theirs):
    med = lambda runs, k: statistics.median(r[k] for r in runs)
    o, t = med(ours, "total"), med(theirs, "total")
    ratio = o / t
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"\n== {route}: a new version to its first log line, {len(ours)} runs, "
          f"load {load()}")
    each = lambda runs: " ".join("%.0f" % ms(r["total"]) for r in runs)
    print(f"ours (API)   runs {each(ours)} ms, median {ms(o):.0f} ms")
    print(f"theirs (CLI) runs {each(theirs)} ms, median {ms(t):.0f} ms")
    print(f"ratio {ratio:.2f} (target <= {TARGET}, {verdict})")
    print("breakdown (medians, ms):")
    for side, runs in (("ours", ours), ("theirs", theirs)):
        parts = [k for k in runs[0] if k != "total"]
        cells = ", ".join(f"{k} {ms(med(runs, k)):.0f}" for k in parts)
        print(f"  {side}: {cells}")


def cleanup_tenant(tenant):
    label = f"label=io.cameleer.tenant={tenant}"
    ids = run("docker", "ps", "-aq", "--filter", label, check=False).split()
    if ids:
        run("docker", "rm", "-f", *ids, check=False)
    images = run("docker", "images", "-q", "--filter", label, check=False).split()
    if images:
        run("docker", "rmi", "-f", *sorted(set(images)), check=False)
    nets = run("docker", "network", "ls", "-q", "--filter", label, check=False).split()
    if nets:
        run("docker", "network", "rm", *nets, check=False)


def bench(route, work, jars, runs):
    tenant = f"speed{os.getpid() % 100000}{route[0]}"
    registry = Registry(work) if route == "registry" else None
    server = None
    try:
        print(f"\n{route}: starting the server (the first start on a machine links the JRE)",
              flush=True)
        server = Server(work, route, jars.agent, registry)
        ours = Ours(server, tenant)
        theirs = None
        ours_runs, their_runs = [], []
        for round_ in range(runs + 1):
            version = round_ + 1
            our_jar, entries = jars.version(1000 * version + 1)
            their_jar, _ = jars.version(1000 * version + 2)
            if round_ == 0:
                o = ours.new_version(version, our_jar)
                base, entrypoint = base_of(ours.image, registry)
                theirs = Theirs(work, tenant, base, entrypoint, jars.agent, registry)
                t = theirs.new_version(version, their_jar)
                print(f"JAR {len(our_jar) / 1e6:.1f} MB, {entries} entries; "
                      f"base {base}; entrypoint {' '.join(entrypoint)}")
            elif round_ % 2 == 0:
                o = ours.new_version(version, our_jar)
                t = theirs.new_version(version, their_jar)
            else:
                t = theirs.new_version(version, their_jar)
                o = ours.new_version(version, our_jar)
            print(f"round {round_}: ours {ms(o['total']):.0f} ms, theirs {ms(t['total']):.0f} ms"
                  + (" (warm-up)" if round_ == 0 else ""), flush=True)
            print("  ours: " + ", ".join(f"{k} {ms(v):.0f}" for k, v in o.items() if k != "total"),
                  flush=True)
            if round_ > 0:
                ours_runs.append(o)
                their_runs.append(t)
        ours.finish()
        theirs.finish()
        report(route, ours_runs, their_runs)
    finally:
        if server:
            server.stop()
        cleanup_tenant(tenant)
        if registry:
            registry.stop()
            images = run("docker", "images", "-q", f"{registry.host}/*/*", check=False).split()
            if images:
                run("docker", "rmi", "-f", *sorted(set(images)), check=False)


def base_of(image, registry):
    """The JRE image and entrypoint of our image, for the Dockerfile."""
    ref = image if registry else image.split("@", 1)[1]
    entrypoint = json.loads(run("docker", "image", "inspect", ref, "--format",
                                "{{json .Config.Entrypoint}}"))
    labels = json.loads(run("docker", "image", "inspect", ref, "--format",
                            "{{json .Config.Labels}}"))
    if registry:
        # The registry route's JRE layer is the same jlink tree as the
        # engine's JRE image of the same key; the CLI builds FROM that.
        key = labels["io.cameleer.jre-key"][:12]
        tags = [t for t in run("docker", "images", "cameleer/jre", "--format",
                               "{{.Repository}}:{{.Tag}}").split() if t.endswith(key)]
        if not tags:
            raise RuntimeError(f"no cameleer/jre image of key {key}: run the commit route first")
        return tags[0], entrypoint
    base_id = labels["io.cameleer.base-image"]
    tags = json.loads(run("docker", "image", "inspect", base_id, "--format",
                          "{{json .RepoTags}}"))
    return tags[0], entrypoint


def main():
    routes = sys.argv[1:]
    runs = int(os.environ.get("RUNS", "5"))
    print(f"machine: {os.cpu_count()} cores, load {load()}; {runs} runs per route after "
          "a warm-up")
    work = tempfile.mkdtemp(prefix="cameleer-api-bench.",
                            dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        jars = Jars(work)
        for route in routes:
            sub = os.path.join(work, route)
            os.makedirs(sub)
            bench(route, sub, jars, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
