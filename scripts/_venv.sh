# Sourced by scripts/test and scripts/demo: make (or reuse) a virtualenv with Airflow and this project.
# Usage: ensure_venv <airflow major: 3|2> ; sets VENV.
ensure_venv() {
    local major="$1" pin extras
    case "$major" in
        3) VENV=.venv; pin="apache-airflow==3.3.2"; extras="test,lint" ;;
        2) VENV=.venv-af2; pin="apache-airflow==2.11.2"; extras="test" ;;
        *) echo "unknown Airflow major version: $major" >&2; return 2 ;;
    esac
    local python="${PYTHON:-python3}"
    if [ ! -x "$VENV/bin/python" ]; then
        "$python" -m venv "$VENV"
    fi
    if [ ! -x "$VENV/bin/uv" ]; then
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv
    fi
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" "$pin" -e ".[$extras]"
}
