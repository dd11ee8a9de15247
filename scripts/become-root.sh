# Sourced by demo.sh and test.sh: `become_root "$0" "$@"` returns when running as root, and
# otherwise runs the script again under sudo, keeping what cargo and the tests need (PATH, a
# rustup toolchain in the caller's home, CI, PODSWITCH_*, NO_COLOR, CARGO_TARGET_DIR). sudo's
# secure_path would replace PATH, hence `sudo env PATH=...`. Without sudo it returns 1 and the
# caller decides (test.sh runs what needs no root; demo.sh stops).
become_root() {
    local self
    self=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    shift
    [ "$(id -u)" -eq 0 ] && return 0
    command -v sudo >/dev/null || return 1
    local keep=("PATH=$PATH") v
    [ -d "${CARGO_HOME:-$HOME/.cargo}" ] && keep+=("CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}")
    [ -d "${RUSTUP_HOME:-$HOME/.rustup}" ] && keep+=("RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}")
    for v in CI PODSWITCH_REQUIRE_ALL NO_COLOR CARGO_TARGET_DIR CARGO_TERM_COLOR; do
        [ -n "${!v+x}" ] && keep+=("$v=${!v}")
    done
    echo "$(basename "$self"): not root: running it again with sudo" >&2
    exec sudo env "${keep[@]}" "$self" "$@"
}
