# Shared by scripts/run and scripts/test: a project venv, installed once per pyproject change.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PIPELINE_VENV:-$ROOT/.venv}"

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

# ensure_venv EXTRAS: create the venv and install the project with EXTRAS (e.g. "dev,export").
ensure_venv() {
    local extras="$1" spec python stamp
    python="$(find_python)" || die "Python >= 3.11 not found (set PYTHON=/path/to/python3.11)"
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        "$python" -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    fi
    spec="."
    [ -n "$extras" ] && spec=".[${extras}]"
    stamp="$VENV/.installed-$(cat "$ROOT/pyproject.toml" | sha1sum | cut -c1-12)-${extras//,/-}"
    if [ ! -f "$stamp" ]; then
        log "installing the project ($spec) into $VENV"
        (cd "$ROOT" && "$VENV/bin/pip" install -q -e "$spec") || die "pip install failed"
        "$VENV/bin/pip" check >/dev/null || { "$VENV/bin/pip" check; die "pip check failed"; }
        touch "$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}

# The runtime reads models only from the cache; export the default model once when it is missing.
ensure_model() {
    local model="${PIPELINE_MODEL:-minilm-l6}"
    if ! "$VENV/bin/pipeline" model path --model "$model" >/dev/null 2>&1; then
        if [ "$model" = "minilm-l6" ] && ! "$VENV/bin/python" -c 'import torch, sentence_transformers' 2>/dev/null; then
            ensure_venv "${1:-export}"
        fi
        log "exporting model $model into the model cache (once)"
        "$VENV/bin/pipeline" model export --model "$model" >&2 || die "model export failed"
    fi
}
