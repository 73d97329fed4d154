#!/usr/bin/env bash
# Everything `make test` and `make lab` need, set up idempotently (a second run takes seconds):
#
#   a. system components (Debian packages) -- installed with apt-get when missing and we are root;
#   b. a Docker engine -- dockerd started in the background when none answers and we are root;
#   c. the virtual environment .venv with ocilab[lab,test,workshop] installed in editable mode;
#   d. configurable-http-proxy from npm (the workshop's JupyterHub), when missing and we are root.
#
# Where something cannot be done (not root, not Debian), one sentence says what is missing and
# how to get it; then, with CI=true, the run fails, otherwise it carries on and the tests that
# need the component are skipped. State (logs, pid file) lives in .lab/ in the repository.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.lab"
VENV="$ROOT/.venv"
STAMP="$VENV/.ocilab-setup-stamp"
ENGINE_WAIT="${OCILAB_ENGINE_WAIT:-30}"   # seconds to wait for a freshly started dockerd
DEFAULT_SOCKET="unix:///var/run/docker.sock"

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # dockerd, runc and iptables live in sbin
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$STATE"

say() { printf 'setup: %s\n' "$*"; }
in_ci() { [[ "${CI:-}" == [Tt][Rr][Uu][Ee] ]]; }
is_root() { [[ "$(id -u)" -eq 0 ]]; }
have() { command -v "$1" >/dev/null 2>&1; }
can_apt() { is_root && have apt-get && [[ -f /etc/debian_version ]]; }

# Something the tests need is missing: say so in one sentence; fail in CI, carry on elsewhere.
missing() {
    say "$*" >&2
    if in_ci; then
        say "CI=true: every component must be present and working, so this run fails." >&2
        exit 1
    fi
}

# ---------------------------------------------------------------------------------------------
# a. System components
# ---------------------------------------------------------------------------------------------

PACKAGES=()   # Debian packages providing what is missing
LACKING=()    # what is missing, in words

lack() {  # lack WHAT PACKAGE...
    LACKING+=("$1")
    shift
    PACKAGES+=("$@")
}

busybox_is_static() {
    [[ -x /bin/busybox ]] || return 1
    have ldd || return 0   # cannot tell; assume the file is what its name says
    local out
    out="$(LC_ALL=C ldd /bin/busybox 2>&1 || true)"
    [[ "$out" == *"not a dynamic executable"* || "$out" == *"statically linked"* ]]
}

venv_ok() {
    [[ -x "$VENV/bin/python" ]] &&
        "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

# Print the path of a Python >= 3.11 that can create virtual environments.
find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
        have "$candidate" || continue
        if "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
            "$candidate" -c 'import sys; print(sys.executable)'
            return 0
        fi
    done
    return 1
}

survey() {
    PACKAGES=()
    LACKING=()
    have dockerd || lack dockerd docker.io
    have docker || lack "the docker CLI" docker.io
    have registry || have docker-registry || lack "the registry (docker-registry)" docker-registry
    have runc || lack runc runc
    have skopeo || lack skopeo skopeo
    have umoci || lack umoci umoci
    have podman || lack podman podman
    have buildah || lack buildah buildah
    have newuidmap || lack "newuidmap (rootless Podman)" uidmap
    busybox_is_static || lack "a static /bin/busybox" busybox-static
    have htpasswd || lack htpasswd apache2-utils
    have iptables || lack iptables iptables
    have openssl || lack "openssl (TLS registry tests)" openssl
    [[ -x /usr/bin/chromium ]] || lack "chromium (the notebooks' browser test)" chromium
    [[ -x /usr/bin/chromedriver ]] || lack "chromedriver (the notebooks' browser test)" chromium-driver
    [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 ||
        lack "the system python3 with venv (the workshop's learners)" python3 python3-venv
    have npm || have configurable-http-proxy || lack "npm (the workshop's configurable-http-proxy)" npm
    have newuidmap || lack "newuidmap (rootless Podman for learners)" uidmap
    [[ -s /etc/ssl/certs/ca-certificates.crt ]] || lack "CA certificates" ca-certificates
    venv_ok || find_python >/dev/null || lack "python3 >= 3.11 with venv" python3 python3-venv
    if ((${#PACKAGES[@]})); then
        mapfile -t PACKAGES < <(printf '%s\n' "${PACKAGES[@]}" | sort -u)
    fi
}

joined() { local out="" item; for item; do out+="${out:+, }$item"; done; printf '%s' "$out"; }

survey
if ((${#PACKAGES[@]})) && can_apt; then
    say "installing ${PACKAGES[*]} with apt-get (log: .lab/apt.log)"
    if ! {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
    } >"$STATE/apt.log" 2>&1; then
        tail -n 15 "$STATE/apt.log" >&2 || true
    fi
    survey
fi
if ((${#PACKAGES[@]})); then
    if can_apt; then
        missing "missing $(joined "${LACKING[@]}") although apt-get ran (see .lab/apt.log); install the Debian packages ${PACKAGES[*]} by hand, tests that need them are skipped meanwhile."
    elif have apt-get; then
        missing "missing $(joined "${LACKING[@]}"): run 'sudo apt-get install ${PACKAGES[*]}' (or run make as root so setup installs them); tests that need them are skipped meanwhile."
    else
        missing "missing $(joined "${LACKING[@]}"): apt-get is not available here (not Debian?), so install the equivalents of the Debian packages ${PACKAGES[*]} with your package manager; tests that need them are skipped meanwhile."
    fi
else
    say "system components present (docker, registry, runc, skopeo, umoci, static busybox, htpasswd, chromium)"
fi

# ---------------------------------------------------------------------------------------------
# b. Docker engine (started now, waited for after the Python set-up)
# ---------------------------------------------------------------------------------------------

# Print the engine's version when it answers; the client may be newer than the engine, which is
# fine: the CLI negotiates the API version down.
engine_version() {
    if have docker; then
        timeout 10 docker version --format '{{.Server.Version}}' 2>/dev/null
    elif have curl; then
        local host="${DOCKER_HOST:-$DEFAULT_SOCKET}"
        [[ "$host" == unix://* ]] || return 1
        curl -sf --max-time 5 --unix-socket "${host#unix://}" http://localhost/_ping >/dev/null && echo "(version unknown)"
    else
        return 1
    fi
}

ENGINE=""           # the engine's version once it answers
DOCKERD_PID=""      # a dockerd we are waiting for
DOCKERD_OURS=""     # set when this script started it
if ENGINE="$(engine_version)" && [[ -n "$ENGINE" ]]; then
    :
elif [[ "${DOCKER_HOST:-$DEFAULT_SOCKET}" != "$DEFAULT_SOCKET" && "${DOCKER_HOST:-}" != "unix:///run/docker.sock" ]]; then
    missing "no Docker engine answers at DOCKER_HOST=$DOCKER_HOST; start that engine or unset DOCKER_HOST to use the local one, tests that need it are skipped meanwhile."
elif ! is_root; then
    missing "no Docker engine answers at ${DOCKER_HOST:-$DEFAULT_SOCKET}: start it (e.g. 'sudo systemctl start docker') and make sure you may use it (group docker), or run make as root so setup starts dockerd; tests that need it are skipped meanwhile."
elif ! have dockerd; then
    missing "no Docker engine answers and dockerd is not installed: run 'apt-get install docker.io' (Debian); tests that need it are skipped meanwhile."
else
    if [[ -s /var/run/docker.pid ]] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        DOCKERD_PID="$(cat /var/run/docker.pid)"
        say "dockerd (pid $DOCKERD_PID) is running but does not answer yet; waiting for it"
    else
        say "no Docker engine answers: starting dockerd (log: .lab/dockerd.log)"
        # Its own session, no terminal and no inherited pipes: it outlives make and never holds a pipe open.
        printf -- '--- %s: scripts/setup.sh starts dockerd\n' "$(date)" >>"$STATE/dockerd.log"
        setsid dockerd >>"$STATE/dockerd.log" 2>&1 </dev/null &
        DOCKERD_PID=$!
        DOCKERD_OURS=1
        echo "$DOCKERD_PID" >"$STATE/dockerd.pid"
    fi
fi

# ---------------------------------------------------------------------------------------------
# c. Python: .venv with ocilab[lab,test,workshop], reinstalled only when pyproject.toml changes
# ---------------------------------------------------------------------------------------------

if ! venv_ok; then
    if ! PYTHON_BIN="$(find_python)"; then
        say "no Python >= 3.11 with the venv module was found: install python3 and python3-venv (Debian) or set PYTHON=/path/to/python3.11, then run make again." >&2
        exit 1
    fi
    if [[ -e "$VENV" ]]; then
        if [[ ! -w "$VENV" ]]; then
            say "$VENV exists but its Python does not run for you and you may not replace it: run 'make clean' as its owner, then make again." >&2
            exit 1
        fi
        say "replacing the unusable .venv (its Python is missing or older than 3.11)"
        rm -rf "$VENV"
    fi
    say "creating .venv with $PYTHON_BIN ($("$PYTHON_BIN" -c 'import platform; print(platform.python_version())'))"
    "$PYTHON_BIN" -m venv "$VENV"
fi

wanted="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) $("$VENV/bin/python" -c 'import sys; print(sys.version)' | head -n1)"
installed() { (cd / && "$VENV/bin/python" -c 'import importlib.metadata as m; m.version("ocilab")') >/dev/null 2>&1; }
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$wanted" ]] || ! installed; then
    say "installing ocilab[lab,test,workshop] into .venv (log: .lab/pip.log)"
    if ! "$VENV/bin/python" -m pip install -q -e "$ROOT[lab,test,workshop]" >"$STATE/pip.log" 2>&1; then
        tail -n 25 "$STATE/pip.log" >&2 || true
        say "pip could not install ocilab[lab,test,workshop] into .venv (see .lab/pip.log); check that PyPI is reachable, then run make again." >&2
        exit 1
    fi
    printf '%s\n' "$wanted" >"$STAMP"
else
    say ".venv is up to date"
fi

# ---------------------------------------------------------------------------------------------
# d. configurable-http-proxy (npm), the proxy of the workshop's JupyterHub
# ---------------------------------------------------------------------------------------------

if ! have configurable-http-proxy; then
    if is_root && have npm; then
        say "installing configurable-http-proxy with npm (log: .lab/npm.log)"
        npm install -g configurable-http-proxy >"$STATE/npm.log" 2>&1 || tail -n 15 "$STATE/npm.log" >&2 || true
    fi
    have configurable-http-proxy ||
        missing "configurable-http-proxy is missing: run 'npm install -g configurable-http-proxy' as root; the workshop test is skipped meanwhile."
fi

# ---------------------------------------------------------------------------------------------
# b, continued: wait (bounded) for the dockerd we started
# ---------------------------------------------------------------------------------------------

if [[ -n "$DOCKERD_PID" ]]; then
    deadline=$((SECONDS + ENGINE_WAIT))
    while ! { ENGINE="$(engine_version)" && [[ -n "$ENGINE" ]]; }; do
        if ((SECONDS >= deadline)) || ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            ENGINE=""
            break
        fi
        sleep 1
    done
    if [[ -z "$ENGINE" && -n "$DOCKERD_OURS" ]]; then
        tail -n 15 "$STATE/dockerd.log" >&2 || true
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            problem="did not answer within ${ENGINE_WAIT} s"
        else
            problem="exited before answering"
        fi
        missing "dockerd $problem (see .lab/dockerd.log); fix what the log says (often iptables or cgroups), tests that need the engine are skipped meanwhile."
    elif [[ -z "$ENGINE" ]]; then
        missing "dockerd (pid $DOCKERD_PID, not started by this script) did not answer within ${ENGINE_WAIT} s; check its log or restart it, tests that need the engine are skipped meanwhile."
    fi
fi

if [[ -n "$ENGINE" ]]; then
    say "Docker engine $ENGINE answers; ready in ${SECONDS} s"
else
    say "ready without a Docker engine in ${SECONDS} s"
fi
