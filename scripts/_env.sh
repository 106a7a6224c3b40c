# Shared by scripts/run and scripts/test: a project venv, installed once per pyproject change, and a venv
# of its own for the model export (torch and sentence-transformers never go into the one the worker runs
# from).
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PIPELINE_VENV:-$ROOT/.venv}"
EXPORT_VENV="${PIPELINE_EXPORT_VENV:-$ROOT/.venv-export}"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# Java 17+ and Maven run the local broker; install them from Debian when we can and they are missing.
ensure_java_maven() {
    if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing Java 17 and Maven (apt-get)"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            openjdk-17-jre-headless maven >/dev/null || die "apt-get could not install Java 17 and Maven"
    fi
}

# need_disk DIR MB WHAT: stop at once, saying so, when DIR's filesystem has less than MB megabytes free, rather
# than let pip fail with "No space left on device" minutes into an install and leave a venv half made.
need_disk() {
    local dir="$1" mb="$2" what="$3" free mount
    while [ ! -d "$dir" ]; do dir="$(dirname "$dir")"; done
    read -r free mount < <(df -Pm "$dir" 2>/dev/null | awk 'NR == 2 {print $4, $6}') || return 0  # no df: no verdict
    [ "$free" -ge "$mb" ] ||
        die "$what needs about $mb MB free on $mount; $free MB are free there (df -m $mount)"
}

# make_venv DIR EXTRAS MB: create the venv DIR and install the project with EXTRAS (e.g. "dev,bench"); a new
# venv needs about MB megabytes, for itself and for pip's unpacking in TMPDIR.
make_venv() {
    local dir="$1" extras="$2" mb="$3" spec python stamp
    python="$(find_python)" || die "Python >= 3.11 not found (set PYTHON=/path/to/python3.11)"
    if [ ! -x "$dir/bin/python" ]; then
        need_disk "$dir" "$mb" "$dir (a new venv)"
        need_disk "${TMPDIR:-/tmp}" "$mb" "pip's unpacking for $dir"
        log "creating $dir"
        "$python" -m venv "$dir"
        "$dir/bin/pip" install -q --upgrade pip >/dev/null
    fi
    spec="."
    [ -n "$extras" ] && spec=".[${extras}]"
    stamp="$dir/.installed-$(sha1sum < "$ROOT/pyproject.toml" | cut -c1-12)-${extras//,/-}"
    if [ ! -f "$stamp" ]; then
        log "installing the project ($spec) into $dir"
        (cd "$ROOT" && "$dir/bin/pip" install -q -e "$spec") || die "pip install failed"
        "$dir/bin/pip" check >/dev/null || { "$dir/bin/pip" check; die "pip check failed"; }
        touch "$stamp"
    fi
}

# ensure_venv EXTRAS: the venv the worker, the CLI and the tests run from.
ensure_venv() {
    make_venv "$VENV" "$1" 1500
    export PATH="$VENV/bin:$PATH"
}

# ensure_export_venv: the export's own venv (torch, transformers, sentence-transformers: several GB).
ensure_export_venv() {
    make_venv "$EXPORT_VENV" "export" 8000
}

# The runtime reads models only from the cache; export the default model once when it is missing.
ensure_model() {
    local model="${PIPELINE_MODEL:-minilm-l6}"
    if ! "$VENV/bin/pipeline" model path --model "$model" >/dev/null 2>&1; then
        local exporter="$VENV/bin/pipeline"
        if [ "$model" = "minilm-l6" ]; then
            ensure_export_venv
            exporter="$EXPORT_VENV/bin/pipeline"
        fi
        log "exporting model $model into the model cache (once)"
        "$exporter" model export --model "$model" >&2 || die "model export failed"
    fi
}

# The simulated-hosts test (tests/e2e/test_hosts.py) needs root, iproute2 and iptables, and for its slow
# link Toxiproxy, built with Go; without them it is skipped and says why. As root, install iptables from
# Debian when it is missing, and build Toxiproxy once (infra/toxiproxy/toxiproxy-local) when Go is found.
ensure_host_tools() {
    [ "$(id -u)" = 0 ] || return 0
    if ! command -v iptables >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        log "installing iptables (apt-get), for the simulated-hosts test"
        { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null; } ||
            log "apt-get could not install iptables: tests/e2e/test_hosts.py will be skipped"
    fi
    "$ROOT/infra/toxiproxy/toxiproxy-local" path >/dev/null ||
        log "no Toxiproxy (see above): the slow-link scenario of tests/e2e/test_hosts.py will be skipped"
}
