# Shared set-up for the README's commands: system packages through apt, the project venv in .venv/.
# Sourced, not run. Idempotent: a second run on a ready machine only checks.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="$REPO_ROOT/.venv"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ensure_apt PROGRAM-OR-PATH:PACKAGE ... installs each package whose program is missing.
ensure_apt() {
  local missing=() item prog pkg
  for item in "$@"; do
    prog=${item%%:*}; pkg=${item#*:}
    if [[ $prog == /* ]]; then [ -e "$prog" ] && continue; else command -v "$prog" >/dev/null 2>&1 && continue; fi
    missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "Installing system packages: ${missing[*]}" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_venv EXTRAS: creates .venv and installs the project with those extras when setup.cfg changed.
ensure_venv() {
  local extras=$1 py stamp want
  py=$(command -v python3.11 || command -v python3)
  [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
  stamp="$VENV/.sferum-installed"
  want="$extras $(sha256sum "$REPO_ROOT/setup.cfg" "$REPO_ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "Installing the project into $VENV ($extras)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v 'is ignored' || true
    "$VENV/bin/python" -m pip install -q -e "$REPO_ROOT[$extras]" 2>&1 | grep -v 'is ignored' || true
    "$VENV/bin/python" -c 'import synapse, synapse_sferum' || { echo "venv install failed" >&2; return 1; }
    echo "$want" > "$stamp"
  fi
}
