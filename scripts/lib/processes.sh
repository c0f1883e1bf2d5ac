# shellcheck shell=bash
# What the benchmark scripts (bench.sh, bench-jetstream.sh) share for the processes they start:
# a log line, every started PID stopped on exit, a bounded stop of one PID, free loopback ports
# and waits for a port or a file. Sourced, not run.

log() { printf '==> %s\n' "$*" >&2; }

# Processes we start: `pids+=("$!")` after each; all are stopped on exit.
pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

forget() { # forget PID: once reaped, a PID may be reused by another process
    local keep=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}

exited() { # exited PID: gone or a zombie waiting to be reaped
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [ -z "$state" ] || [ "${state#Z}" != "$state" ]
}

stop_pid() { # stop_pid PID: SIGTERM (unless it already ended), SIGKILL after 10 s, reap
    local pid="$1" i
    if ! exited "$pid"; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 100); do
            exited "$pid" && break
            sleep 0.1
        done
        exited "$pid" || kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # wait_port PORT SECONDS
    local i
    for i in $(seq $(($2 * 10))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1 after $2 s" >&2
    return 1
}

wait_file() { # wait_file PATH SECONDS
    local i
    for i in $(seq $(($2 * 10))); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    echo "$1 did not appear within $2 s" >&2
    return 1
}
