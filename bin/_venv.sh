# Shared by bin/run and bin/test: a virtualenv that follows the requirements files.

ensure_venv() {
  local requirements="$1"
  local python="${PYTHON:-python3.11}"
  command -v "$python" >/dev/null || python=python3
  if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv with $python" >&2
    if ! "$python" -m venv .venv 2>/dev/null; then
      rm -rf .venv
      # Debian splits venv/ensurepip out of python3; install it where we may.
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Installing Debian's python3-venv" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$python" -m venv .venv
      else
        echo "ERROR: '$python -m venv' failed; install your distribution's python3-venv package" >&2
        exit 1
      fi
    fi
  fi
  local stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-${requirements}"
  if [ ! -f "$stamp" ]; then
    echo "Installing $requirements into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
    touch "$stamp"
  fi
}

# Browser tests drive Debian's Chromium; install it where we may (root with apt).
ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the browser tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "WARNING: could not install chromium; browser tests will be skipped" >&2
  else
    echo "NOTE: /usr/bin/chromium is missing; browser tests will be skipped" >&2
  fi
}
