#!/usr/bin/env bash
# End-to-end overhead benchmark: the same load straight to a mock upstream and through the
# gateway, in one run, on loopback. See docs/benchmarks.md.
#
#   bash benches/overhead.sh
#
# Knobs (environment): DURATION (seconds of load per target and scenario, default 10), ROUNDS
# (alternating slices DURATION is split into, default 5), WARMUP (seconds per warm-up,
# default 3), RATE (fixed-rate req/s, default 1000), CONCURRENCY (closed loop, default 32),
# TTFB_N (curl requests per target for stream TTFB, default 200).
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-3}
RATE=${RATE:-1000}
CONCURRENCY=${CONCURRENCY:-32}
TTFB_N=${TTFB_N:-200}
# Fixed-rate runs use enough connections that a slow response never holds back the schedule.
RATE_CONNECTIONS=${RATE_CONNECTIONS:-16}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '[overhead] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

# --- 1. build and tools ---------------------------------------------------------------------
log "building the release binary"
timeout 1800 cargo build --release --quiet
GATEWAY="$ROOT/target/release/gateway"
[[ -x $GATEWAY ]] || die "$GATEWAY was not built"

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v oha >/dev/null; then
    log "installing oha (cargo install oha --locked)"
    timeout 1800 cargo install oha --locked --quiet
fi
OHA=$(command -v oha)

# --- 2. start upstream and gateway ------------------------------------------------------------
WORK=$(mktemp -d -t gateway-bench.XXXXXX)
UPSTREAM_PID=""
GATEWAY_PID=""
cleanup() {
    local rc=$?
    for pid in "$GATEWAY_PID" "$UPSTREAM_PID"; do
        [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
    done
    for pid in "$GATEWAY_PID" "$UPSTREAM_PID"; do
        if [[ -n $pid ]]; then
            # Bounded wait; force-kill if the grace period is not respected.
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Three free loopback ports, held open together so they are distinct.
read -r UP_PORT GW_PORT ADMIN_PORT < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)

# Only this script's settings reach the gateway: drop GATEWAY_* overrides from the environment.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^GATEWAY_' || true)

KEY="sk-bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
KEY_HASH=$("$GATEWAY" hash-key "$KEY")
cat >"$WORK/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$GW_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"

[[providers]]
name = "upstream"
kind = "openai"
base_url = "http://127.0.0.1:$UP_PORT/v1"

[[models]]
name = "gpt-4o-mini"
deployments = [{ provider = "upstream", model = "gpt-4o-mini" }]

[[projects]]
name = "bench"
keys = ["$KEY_HASH"]
models = ["*"]
EOF

UP_URL="http://127.0.0.1:$UP_PORT/v1/chat/completions"
GW_URL="http://127.0.0.1:$GW_PORT/v1/chat/completions"
READY_URL="http://127.0.0.1:$ADMIN_PORT/readyz"
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in five words."}]}'
STREAM_BODY='{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello in five words."}]}'
AUTH="Authorization: Bearer $KEY"
CT="Content-Type: application/json"

# wait_ok WHAT PID LOG CURL-ARGS...: polls until curl answers 200, for at most 30 s; fails at
# once if the process PID exits, showing the end of its LOG.
wait_ok() {
    local what=$1 pid=$2 logfile=$3; shift 3
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" || true) == 200 ]]; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2
            die "$what exited before it was ready"
        fi
        sleep 0.05
    done
    tail -n 20 "$logfile" >&2
    die "$what not ready within 30 s"
}

log "starting the mock upstream on 127.0.0.1:$UP_PORT"
RUST_LOG=warn "$GATEWAY" mock-server --listen "127.0.0.1:$UP_PORT" >"$WORK/upstream.log" 2>&1 &
UPSTREAM_PID=$!
wait_ok "mock upstream" "$UPSTREAM_PID" "$WORK/upstream.log" -X POST -H "$CT" -d "$BODY" "$UP_URL"

log "starting the gateway on 127.0.0.1:$GW_PORT (admin $ADMIN_PORT), RUST_LOG=warn"
RUST_LOG=warn "$GATEWAY" serve --config "$WORK/gateway.toml" >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
wait_ok "gateway /readyz" "$GATEWAY_PID" "$WORK/gateway.log" "$READY_URL"

proc_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
IDLE_RSS_KIB=$(proc_kib "$GATEWAY_PID" VmRSS)
log "gateway idle RSS: ${IDLE_RSS_KIB} KiB"

# Sanity: one request of each kind through the gateway must succeed.
for body in "$BODY" "$STREAM_BODY"; do
    code=$(curl -s -o "$WORK/probe.out" -w '%{http_code}' --max-time 10 -X POST -H "$CT" -H "$AUTH" -d "$body" "$GW_URL" || true)
    [[ $code == 200 ]] || { cat "$WORK/probe.out" >&2; die "gateway answered $code to a probe request"; }
done

# --- 3. load ------------------------------------------------------------------------------
# Each measured run is split into ROUNDS slices that alternate between the two targets (the
# first target swaps every round), so drifting background load on a shared machine hits both
# sides alike. Slice results are pooled per target.
SLICE_MS=$((DURATION * 1000 / ROUNDS))

# run_oha NAME URL BODY FORMAT [extra oha args...]: writes $WORK/NAME.FORMAT.
run_oha() {
    local name=$1 url=$2 body=$3 format=$4; shift 4
    local headers=(-H "$CT")
    [[ $url == "$GW_URL" ]] && headers+=(-H "$AUTH")
    timeout $((DURATION + WARMUP + 60)) "$OHA" --no-tui --output-format "$format" -w \
        -m POST "${headers[@]}" -d "$body" "$@" "$url" >"$WORK/$name.$format"
}

# alternate NAME BODY FORMAT [extra oha args...]: ROUNDS slices per target, alternating;
# writes $WORK/NAME_{direct,gateway}_<round>.FORMAT.
alternate() {
    local name=$1 body=$2 format=$3; shift 3
    local round
    for ((round = 0; round < ROUNDS; round++)); do
        local order=(direct gateway)
        ((round % 2)) && order=(gateway direct)
        for side in "${order[@]}"; do
            local url=$UP_URL
            [[ $side == gateway ]] && url=$GW_URL
            run_oha "${name}_${side}_${round}" "$url" "$body" "$format" -z "${SLICE_MS}ms" "$@"
        done
    done
}

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "warm-up (${WARMUP} s per target and mode)"
for target in "$UP_URL" "$GW_URL"; do
    run_oha warmup "$target" "$BODY" json -z "${WARMUP}s" -c "$CONCURRENCY"
    run_oha warmup "$target" "$STREAM_BODY" json -z "${WARMUP}s" -c "$CONCURRENCY"
done

log "fixed rate: ${RATE} req/s, non-stream, ${DURATION} s per target in ${ROUNDS} alternating slices"
alternate rate "$BODY" csv -q "$RATE" -c "$RATE_CONNECTIONS" --latency-correction

log "closed loop, non-stream: concurrency ${CONCURRENCY}, ${DURATION} s per target in ${ROUNDS} alternating slices"
alternate closed "$BODY" json -c "$CONCURRENCY"

log "closed loop, stream: concurrency ${CONCURRENCY}, ${DURATION} s per target in ${ROUNDS} alternating slices"
alternate stream "$STREAM_BODY" json -c "$CONCURRENCY"

log "stream TTFB: ${TTFB_N} curl requests per target, alternating"
: >"$WORK/ttfb_direct.txt"
: >"$WORK/ttfb_gateway.txt"
# curl prints the -w line (status 000) even when a request fails.
for _ in $(seq "$TTFB_N"); do
    curl -s -o /dev/null -w '%{http_code} %{time_starttransfer}\n' --max-time 10 -N \
        -X POST -H "$CT" -d "$STREAM_BODY" "$UP_URL" >>"$WORK/ttfb_direct.txt" || true
    curl -s -o /dev/null -w '%{http_code} %{time_starttransfer}\n' --max-time 10 -N \
        -X POST -H "$CT" -H "$AUTH" -d "$STREAM_BODY" "$GW_URL" >>"$WORK/ttfb_gateway.txt" || true
done

kill -0 "$GATEWAY_PID" 2>/dev/null || die "the gateway exited during the run"
PEAK_RSS_KIB=$(proc_kib "$GATEWAY_PID" VmHWM)
AFTER_RSS_KIB=$(proc_kib "$GATEWAY_PID" VmRSS)

# --- 4. summary -----------------------------------------------------------------------------
mkdir -p "$ROOT/bench-results"
STAMP=$(date '+%Y-%m-%d-%H%M%S')
OUT="$ROOT/bench-results/overhead-$STAMP.md"

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)

WORK="$WORK" IDLE_RSS_KIB="$IDLE_RSS_KIB" PEAK_RSS_KIB="$PEAK_RSS_KIB" AFTER_RSS_KIB="$AFTER_RSS_KIB" \
DURATION="$DURATION" ROUNDS="$ROUNDS" RATE="$RATE" CONCURRENCY="$CONCURRENCY" TTFB_N="$TTFB_N" \
CPU_MODEL="$CPU_MODEL" NPROC="$(nproc)" LOADAVG_START="$LOADAVG_START" LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)" \
OHA_VERSION="$("$OHA" --version)" REV="$REV" STAMP="$STAMP" \
python3 - >"$OUT" <<'EOF'
import csv, glob, json, math, os, statistics

env = os.environ
work = env["WORK"]
issues = []


def slices(name, side, fmt):
    paths = sorted(glob.glob(os.path.join(work, f"{name}_{side}_*.{fmt}")))
    if not paths:
        raise SystemExit(f"no results for {name} {side}")
    return paths


def pct(values, p):
    """Nearest-rank percentile (NaN when there is no sample)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def verdict(ok):
    return "PASS" if ok else "FAIL"


def rate_run(side):
    """Pooled per-request latencies (ms) of the fixed-rate slices, from oha's CSV.

    Requests that opened a connection (the first on each connection of a slice) are left out,
    so both sides measure keep-alive request latency. The CSV lists only requests that got a
    response: a shortfall against the schedule is reported."""
    lat, total, statuses, connects = [], 0, {}, 0
    for path in slices("rate", side, "csv"):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        total += len(rows)
        for r in rows:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
            if float(r["DNS+dialup"]) > 0:
                connects += 1
            elif r["status"] == "200":
                lat.append(float(r["request-duration"]) * 1000.0)
    expected = int(env["RATE"]) * int(env["DURATION"])
    bad = {k: v for k, v in statuses.items() if k != "200"}
    if bad:
        issues.append(f"- fixed rate, {side}: "
                      + ", ".join(f"{v}x HTTP {k}" for k, v in sorted(bad.items())))
    if total < expected * 0.98:
        issues.append(f"- fixed rate, {side}: {total} responses for {expected} scheduled requests")
    return lat, total, connects


def closed_run(name, side):
    """Pooled throughput of the closed-loop slices: 200 responses per second of load."""
    ok, secs, bad, errs = 0, 0.0, {}, {}
    for path in slices(name, side, "json"):
        with open(path) as f:
            r = json.load(f)
        secs += r["summary"]["total"]
        for k, v in r.get("statusCodeDistribution", {}).items():
            if k == "200":
                ok += v
            else:
                bad[k] = bad.get(k, 0) + v
        for k, v in r.get("errorDistribution", {}).items():
            errs[k] = errs.get(k, 0) + v
    parts = [f"{v}x HTTP {k}" for k, v in sorted(bad.items())]
    parts += [f"{v}x {k}" for k, v in sorted(errs.items())]
    if parts:
        label = "stream" if name == "stream" else "non-stream"
        issues.append(f"- closed loop {label}, {side}: " + ", ".join(parts) + f" (and {ok}x HTTP 200)")
    return ok / secs if secs else 0.0


def ttfb(side):
    codes, times = [], []
    with open(os.path.join(work, f"ttfb_{side}.txt")) as f:
        for line in f:
            code, t = line.split()
            codes.append(code)
            if code == "200":
                times.append(float(t) * 1000.0)
    bad = [c for c in codes if c != "200"]
    if bad:
        issues.append(f"- stream TTFB, {side}: {len(bad)} of {len(codes)} curl requests "
                      f"not 200 ({', '.join(sorted(set(bad)))})")
    return times


lat_d, n_d, conn_d = rate_run("direct")
lat_g, n_g, conn_g = rate_run("gateway")
p50_d, p50_g = pct(lat_d, 50), pct(lat_g, 50)
p99_d, p99_g = pct(lat_d, 99), pct(lat_g, 99)
add50, add99 = p50_g - p50_d, p99_g - p99_d

closed_d, closed_g = closed_run("closed", "direct"), closed_run("closed", "gateway")
stream_d, stream_g = closed_run("stream", "direct"), closed_run("stream", "gateway")
ratio = lambda b, a: b / a if a else float("nan")
nonstream_ratio, stream_ratio = ratio(closed_g, closed_d), ratio(stream_g, stream_d)

t_d, t_g = ttfb("direct"), ttfb("gateway")

for name in ("gateway", "upstream"):
    with open(os.path.join(work, f"{name}.log"), errors="replace") as f:
        lines = [l.rstrip() for l in f if l.strip()]
    if lines:
        issues.append(f"- the {name} logged {len(lines)} line(s) at warn or above, first: {lines[0][:300]}")
median = lambda v: statistics.median(v) if v else float("nan")
med_d, med_g = median(t_d), median(t_g)
tp99_d, tp99_g = pct(t_d, 99), pct(t_g, 99)

mib = lambda kib: int(kib) / 1024.0
idle, peak, after = mib(env["IDLE_RSS_KIB"]), mib(env["PEAK_RSS_KIB"]), mib(env["AFTER_RSS_KIB"])

R, C, N = env["RATE"], env["CONCURRENCY"], env["TTFB_N"]
rows = [
    (f"Fixed {R} req/s, non-stream: p50 latency", f"{p50_d:.3f} ms", f"{p50_g:.3f} ms",
     f"{add50:+.3f} ms", "added <= 0.2 ms", verdict(add50 <= 0.2)),
    (f"Fixed {R} req/s, non-stream: p99 latency", f"{p99_d:.3f} ms", f"{p99_g:.3f} ms",
     f"{add99:+.3f} ms", "added <= 1 ms", verdict(add99 <= 1.0)),
    (f"Closed loop c={C}, non-stream: throughput", f"{closed_d:.0f} req/s", f"{closed_g:.0f} req/s",
     f"{nonstream_ratio:.0%} of direct", ">= 35%", verdict(nonstream_ratio >= 0.35)),
    (f"Closed loop c={C}, stream: throughput", f"{stream_d:.0f} req/s", f"{stream_g:.0f} req/s",
     f"{stream_ratio:.0%} of direct", ">= 35%", verdict(stream_ratio >= 0.35)),
    (f"Stream TTFB, median (curl, n={N})", f"{med_d:.3f} ms", f"{med_g:.3f} ms",
     f"{med_g - med_d:+.3f} ms", "", ""),
    (f"Stream TTFB, p99 (curl, n={N})", f"{tp99_d:.3f} ms", f"{tp99_g:.3f} ms",
     f"{tp99_g - tp99_d:+.3f} ms", "", ""),
    ("Gateway idle RSS (VmRSS after startup)", "", f"{idle:.1f} MiB", "", "<= 20 MiB",
     verdict(idle <= 20.0)),
    ("Gateway peak RSS (VmHWM after the load)", "", f"{peak:.1f} MiB", "", "", ""),
]

out = [
    f"# Gateway overhead benchmark, {env['STAMP']}",
    "",
    f"Machine: {env['NPROC']} CPUs, {env['CPU_MODEL']}; load average before the load "
    f"{env['LOADAVG_START']}, after {env['LOADAVG']}. {env['OHA_VERSION']}; gateway revision {env['REV']}; gateway and "
    f"upstream with RUST_LOG=warn; {env['DURATION']} s of load per target and scenario in "
    f"{env['ROUNDS']} alternating slices.",
    "Load generator, mock upstream and gateway share the same CPUs: compare (a) with (b) "
    "from the same run, not with other machines.",
    "",
    "| Measurement | (a) direct to upstream | (b) through gateway | (b) vs (a) | Target | Result |",
    "|---|---|---|---|---|---|",
]
out += ["| " + " | ".join(r) + " |" for r in rows]
out += [
    "",
    f"Fixed rate: {n_d} (direct) and {n_g} (gateway) responses; percentiles leave out the "
    f"{conn_d} and {conn_g} requests that opened a connection. Gateway RSS after the load: "
    f"{after:.1f} MiB.",
    "",
]
if issues:
    out.append("Non-200 responses, transport errors or missing responses:")
    out += issues
else:
    out.append("Every request in every run answered 200 (no transport errors).")
print("\n".join(out))
EOF

echo
cat "$OUT"
echo
log "written to ${OUT#"$ROOT"/}"
