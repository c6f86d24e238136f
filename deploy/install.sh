#!/usr/bin/env bash
# Install, upgrade or remove awsd as a hardened systemd service on Debian, Ubuntu and Raspberry
# Pi OS (amd64, arm64, armhf).
#
# What it promises:
#   - Idempotent: running it again with the same inputs changes nothing (no file rewritten, no
#     restart). A new release (another source tree, wheel or wheelhouse) upgrades in place, checks
#     the existing config with the new version, then restarts the service.
#   - Your files are yours: /etc/awsd/config.toml and /etc/default/awsd are written once and
#     kept; a base.toml you edited is kept too (the new default lands next to it as
#     base.toml.dist). State in /var/lib/awsd (outbox, checkpoints, alert state) survives
#     upgrades and --uninstall; only --purge removes state, config and the awsd user.
#   - --root DIR stages everything under DIR without touching the running system: no users, no
#     systemctl calls except `systemctl --root` (offline unit enabling), no apt. For tests and
#     image builds (note that the venv's scripts point into DIR).
#
# Layout: /opt/awsd (venv; share/awsd has the unit, templates and this script),
# /usr/local/lib/systemd/system/awsd.service, /usr/local/lib/sysusers.d/awsd.conf,
# /etc/awsd/{config.toml,base.toml}, /etc/default/awsd, /var/lib/awsd.
set -Eeuo pipefail
umask 022

usage() {
    cat <<'EOF'
Usage: install.sh [OPTIONS]            install or upgrade awsd, enable and start the service
       install.sh --uninstall [--purge] remove it (state and config kept unless --purge)

What to install (default: the source tree this script belongs to):
  --source DIR         an awsd source tree (the directory with pyproject.toml)
  --wheel FILE         an awsd wheel (.whl)
  --wheelhouse DIR     install only from wheels in DIR, with no package index (offline
                       machines); alone, it installs the newest awsd wheel found there
  --extras LIST        extras to install, comma-separated (for example: local)
  --python PATH        the interpreter for the venv (default: the newest python3.X >= 3.11)
  --force              reinstall the package even if it is unchanged

Configuration:
  --env NAME           template for /etc/awsd/config.toml when it does not exist yet:
                       prod (EC2), pi (Raspberry Pi), dev, local (embedded moto, no AWS account).
                       Default: pi on a Raspberry Pi, else prod.

Service:
  --no-enable          do not enable the service at boot
  --no-start           do not start (or restart) the service
  --notify-reload MODE auto|yes|no: add the Type=notify-reload drop-in (auto: systemd >= 253)

Other:
  --root DIR           stage into DIR instead of the running system (no users, no systemd, no apt)
  --uninstall          stop, disable and remove awsd; keep /etc/awsd, /etc/default/awsd and state
  --purge              with --uninstall: remove config, state and the awsd user as well
  -q, --quiet          print only warnings, errors and the summary
  -v, --verbose        show pip's own output
  -h, --help           this text
EOF
}

# --- settings ------------------------------------------------------------------------------------

readonly VENV=/opt/awsd
readonly SHARE=$VENV/share/awsd
readonly STAMP_DIR=$VENV/.install
readonly UNIT_DIR=/usr/local/lib/systemd/system
readonly UNIT=$UNIT_DIR/awsd.service
readonly DROPIN=$UNIT_DIR/awsd.service.d/notify-reload.conf
readonly SYSUSERS=/usr/local/lib/sysusers.d/awsd.conf
readonly CONF_DIR=/etc/awsd
readonly DEFAULTS=/etc/default/awsd
readonly STATE_DIR=/var/lib/awsd
readonly SERVICE_USER=awsd
readonly MIN_PYTHON=3.11

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=""
ENV_NAME=""
SOURCE=""
WHEEL=""
WHEELHOUSE=""
EXTRAS=""
PYTHON=""
FORCE=0
ENABLE=1
START=1
NOTIFY_RELOAD=auto
UNINSTALL=0
PURGE=0
QUIET=0
VERBOSE=0

PACKAGE_CHANGED=0
UNIT_CHANGED=0
SERVICE_GID=""
TMP=""

# --- output --------------------------------------------------------------------------------------

say() { ((QUIET)) || printf 'awsd-install: %s\n' "$*"; }
note() { printf 'awsd-install: %s\n' "$*"; }
warn() { printf 'awsd-install: warning: %s\n' "$*" >&2; }
die() {
    printf 'awsd-install: error: %s\n' "$1" >&2
    exit "${2:-1}"
}

on_error() {
    printf 'awsd-install: error: unexpected failure at line %s (exit %s); nothing after it ran\n' \
        "$1" "$2" >&2
}
trap 'on_error "$LINENO" "$?"' ERR
cleanup() { if [[ -n $TMP ]]; then rm -rf "$TMP"; fi; }
trap cleanup EXIT

# --- arguments -----------------------------------------------------------------------------------

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)" 2; }

parse_args() {
    while [[ $# -gt 0 ]]; do
        case $1 in
        --source) need_value "$@"; SOURCE=$2; shift ;;
        --wheel) need_value "$@"; WHEEL=$2; shift ;;
        --wheelhouse) need_value "$@"; WHEELHOUSE=$2; shift ;;
        --extras) need_value "$@"; EXTRAS=$2; shift ;;
        --python) need_value "$@"; PYTHON=$2; shift ;;
        --env) need_value "$@"; ENV_NAME=$2; shift ;;
        --root) need_value "$@"; ROOT=$2; shift ;;
        --notify-reload) need_value "$@"; NOTIFY_RELOAD=$2; shift ;;
        --force) FORCE=1 ;;
        --no-enable) ENABLE=0 ;;
        --no-start) START=0 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        -q | --quiet) QUIET=1 ;;
        -v | --verbose) VERBOSE=1 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" 2 ;;
        esac
        shift
    done
    if ((PURGE && !UNINSTALL)); then die "--purge goes with --uninstall" 2; fi
    [[ $NOTIFY_RELOAD =~ ^(auto|yes|no)$ ]] || die "--notify-reload takes auto, yes or no" 2
    if [[ -n $ENV_NAME && ! $ENV_NAME =~ ^[a-z][a-z0-9-]{0,31}$ ]]; then
        die "invalid environment name '$ENV_NAME'" 2
    fi
    [[ -z $EXTRAS || $EXTRAS =~ ^[a-z0-9_-]+(,[a-z0-9_-]+)*$ ]] || die "invalid --extras '$EXTRAS'" 2
    if [[ -n $SOURCE && -n $WHEEL ]]; then die "give --source or --wheel, not both" 2; fi
    if [[ -n $ROOT ]]; then
        mkdir -p "$ROOT"
        ROOT=$(cd "$ROOT" && pwd)
        [[ $ROOT != / ]] || ROOT=""
    fi
    if [[ -n $SOURCE ]]; then
        [[ -f $SOURCE/pyproject.toml ]] || die "--source $SOURCE: no pyproject.toml there" 2
        SOURCE=$(cd "$SOURCE" && pwd)
    fi
    if [[ -n $WHEEL ]]; then
        [[ -f $WHEEL && $WHEEL == *.whl ]] || die "--wheel $WHEEL: not a .whl file" 2
        WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
    fi
    if [[ -n $WHEELHOUSE ]]; then
        [[ -d $WHEELHOUSE ]] || die "--wheelhouse $WHEELHOUSE: not a directory" 2
        WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
    fi
    ((UNINSTALL)) && return
    if [[ -z $SOURCE && -z $WHEEL && -z $WHEELHOUSE ]]; then
        [[ -f $SCRIPT_DIR/../pyproject.toml ]] ||
            die "no source tree next to this script: give --source, --wheel or --wheelhouse" 2
        SOURCE=$(cd "$SCRIPT_DIR/.." && pwd)
    fi
    if [[ $ENV_NAME == local ]]; then add_extra local; fi
    # Fail before a long install when the template cannot exist (checked again after it).
    local configs=${SOURCE:+$SOURCE/configs}
    [[ -n $configs || ! -d $ROOT$SHARE/configs ]] || configs=$ROOT$SHARE/configs
    if [[ -n $ENV_NAME && -n $configs && ! -f $ROOT$CONF_DIR/config.toml ]] &&
        [[ $ENV_NAME == base || ! -f $configs/$ENV_NAME.toml ]]; then
        die "no '$ENV_NAME' template; choose one of: $(templates "$configs")" 2
    fi
}

add_extra() {
    case ",$EXTRAS," in *",$1,"*) ;; *) EXTRAS=${EXTRAS:+$EXTRAS,}$1 ;; esac
}

# --- the machine ---------------------------------------------------------------------------------

live() { [[ -z $ROOT ]]; }

preflight() {
    if live; then
        [[ $EUID -eq 0 ]] || die "run as root (sudo $0 ...), or stage with --root DIR"
        if ! command -v systemctl >/dev/null || [[ ! -d /run/systemd/system ]]; then
            die "systemd is not running here; stage with --root DIR instead"
        fi
        exec 9>/run/awsd-install.lock
        flock -n 9 || die "another install.sh is running"
        if ((!UNINSTALL)); then
            if [[ $NOTIFY_RELOAD == yes && $(systemd_version) -lt 253 ]]; then
                # Older systemd ignores the type but applies the ExecReload= reset: a reload
                # would never reach the daemon.
                die "--notify-reload yes needs systemd >= 253 (this is $(systemd_version))" 2
            fi
            # ExecReload= signals with /bin/kill (procps), missing from minimal images.
            [[ -x /bin/kill ]] || apt_install procps
        fi
    fi
    local id="" like="" arch
    if [[ -r /etc/os-release ]]; then
        # shellcheck source=/dev/null
        id=$(. /etc/os-release && echo "${ID:-}")
        # shellcheck source=/dev/null
        like=$(. /etc/os-release && echo "${ID_LIKE:-}")
    fi
    case " $id $like " in
    *" debian "* | *" ubuntu "* | *" raspbian "*) ;;
    *) warn "made for Debian, Ubuntu and Raspberry Pi OS; this is '${id:-unknown}': carrying on" ;;
    esac
    arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
    case $arch in
    amd64 | arm64 | armhf | x86_64 | aarch64 | armv7l) ;;
    *) warn "untested architecture '$arch': carrying on" ;;
    esac
    say "target ${ROOT:-/} (${id:-unknown} $arch)"
}

# The environment template to use when /etc/awsd/config.toml does not exist yet.
detect_env() {
    if grep -qas 'Raspberry Pi' /proc/device-tree/model /sys/firmware/devicetree/base/model; then
        echo pi
    elif [[ $(cat /sys/devices/virtual/dmi/id/sys_vendor 2>/dev/null || true) == "Amazon EC2" ]] ||
        [[ $(cat /sys/devices/virtual/dmi/id/board_asset_tag 2>/dev/null || true) == i-* ]] ||
        grep -qsi '^ec2' /sys/hypervisor/uuid; then
        echo prod
    else
        note "neither EC2 nor a Raspberry Pi detected: using the prod template (--env to choose)" >&2
        echo prod
    fi
}

python_ok() { # python_ok PYTHON: true when it is >= MIN_PYTHON and can create venvs with pip
    "$1" - "$MIN_PYTHON" >/dev/null 2>&1 <<'EOF'
import sys, venv, ensurepip  # ensurepip is missing without Debian's python3-venv
want = tuple(int(p) for p in sys.argv[1].split("."))
sys.exit(0 if sys.version_info[:2] >= want else 1)
EOF
}

python_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }

choose_python() {
    local candidate path
    if [[ -n $PYTHON ]]; then
        python_ok "$PYTHON" && return
        die "--python $PYTHON: needs Python >= $MIN_PYTHON with the venv module (python3-venv)"
    fi
    for candidate in python3.13 python3.12 python3.11 python3; do
        path=$(command -v "$candidate" || true)
        if [[ -n $path ]] && python_ok "$path"; then
            PYTHON=$path
            return
        fi
    done
    if live && command -v apt-get >/dev/null; then
        local version
        version=$(python_version "$(command -v python3 || echo python3)" || true)
        if [[ -n $version ]] && printf '%s\n%s\n' "$MIN_PYTHON" "$version" | sort -VC; then
            say "installing python3-venv (apt)"
            apt_install python3-venv "python$version-venv"
        else
            say "installing python$MIN_PYTHON (apt)"
            apt_install "python$MIN_PYTHON" "python$MIN_PYTHON-venv"
        fi
        for candidate in python3 "python$MIN_PYTHON"; do
            path=$(command -v "$candidate" || true)
            if [[ -n $path ]] && python_ok "$path"; then
                PYTHON=$path
                return
            fi
        done
    fi
    die "awsd needs Python >= $MIN_PYTHON with venv support: apt-get install python3 python3-venv"
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; } ||
        die "apt-get install $* failed"
}

# --- files ---------------------------------------------------------------------------------------

# put_file SRC DST MODE [GROUP]: install SRC at DST unless it is already there, byte for byte.
# Sets CHANGED=1 when it wrote anything (content or mode).
put_file() {
    local src=$1 dst=$2 mode=$3 group=${4:-0}
    CHANGED=0
    if [[ -f $dst ]] && cmp -s "$src" "$dst"; then
        fix_mode "$dst" "$mode" "$group"
        return 0
    fi
    mkdir -p "$(dirname "$dst")"
    # shellcheck disable=SC2046 # owner prints whole options
    install -m "$mode" $(owner "$group") "$src" "$dst.new.$$"
    mv -f "$dst.new.$$" "$dst"
    say "wrote ${dst#"$ROOT"}"
    CHANGED=1
}

fix_mode() { # fix_mode PATH MODE GROUP: correct the mode and group if they drifted
    if [[ $(stat -c '%a' "$1") != "$(printf '%o' "$((8#$2))")" ]]; then
        chmod "$2" "$1"
        say "fixed the mode of ${1#"$ROOT"}"
        CHANGED=1
    fi
    if ((EUID == 0)) && [[ $(stat -c '%g' "$1") != "$3" ]]; then
        chgrp "$3" "$1"
        say "fixed the group of ${1#"$ROOT"}"
        CHANGED=1
    fi
}

owner() { # owner GROUP: install(1) ownership options, when we may set them
    if ((EUID == 0)); then printf '%s\n' -o 0 -g "$1"; fi
}

ensure_dir() { # ensure_dir PATH MODE GROUP
    if [[ ! -d $1 ]]; then
        # shellcheck disable=SC2046 # owner prints whole options
        install -d -m "$2" $(owner "$3") "$1"
        say "created ${1#"$ROOT"}"
    else
        fix_mode "$1" "$2" "$3"
    fi
}

sha256() { [[ -f $1 ]] && sha256sum "$1" | cut -d' ' -f1; }

# --- the awsd user -------------------------------------------------------------------------------

ensure_user() {
    local sysusers_src=$1
    if live; then
        if ! getent passwd "$SERVICE_USER" >/dev/null; then
            if command -v systemd-sysusers >/dev/null; then
                systemd-sysusers "$sysusers_src" >/dev/null
            else
                useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
                    --shell /usr/sbin/nologin --comment "awsd daemon" "$SERVICE_USER"
            fi
            say "created the system user '$SERVICE_USER'"
        fi
        SERVICE_GID=$(getent group "$SERVICE_USER" | cut -d: -f3)
    elif [[ -f $ROOT/etc/passwd && -f $ROOT/etc/group ]]; then
        # A real image root: create the user in its own user database, offline.
        if ! grep -q "^$SERVICE_USER:" "$ROOT/etc/passwd"; then
            systemd-sysusers --root="$ROOT" "$sysusers_src" >/dev/null
            say "created the system user '$SERVICE_USER' in $ROOT/etc/passwd"
        fi
        SERVICE_GID=$(awk -F: -v u="$SERVICE_USER" '$1 == u { print $3 }' "$ROOT/etc/group")
    fi
    SERVICE_GID=${SERVICE_GID:-0}
}

# --- the package ---------------------------------------------------------------------------------

# A fingerprint of what is asked for: the same inputs give the same fingerprint, so a second run
# skips pip entirely.
fingerprint() {
    {
        echo "python=$(python_version "$ROOT$VENV/bin/python") extras=$EXTRAS"
        if [[ -n $SOURCE ]]; then
            echo "source"
            (cd "$SOURCE" && find pyproject.toml README.md docs daemon configs systemd deploy -type f \
                ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 2>/dev/null |
                LC_ALL=C sort -z | xargs -0 sha256sum)
        elif [[ -n $WHEEL ]]; then
            echo "wheel $(sha256 "$WHEEL")"
        fi
        if [[ -n $WHEELHOUSE ]]; then
            echo "wheelhouse"
            (cd "$WHEELHOUSE" && find . -maxdepth 1 -name 'awsd-*.whl' -print0 |
                LC_ALL=C sort -z | xargs -0 -r sha256sum)
        fi
    } | sha256sum | cut -d' ' -f1
}

ensure_venv() {
    local venv=$ROOT$VENV
    if [[ -x $venv/bin/python ]] && python_version "$venv/bin/python" >/dev/null; then
        return
    fi
    if [[ -e $venv ]]; then
        # The interpreter behind it is gone (an OS upgrade replaced python3.X): start afresh.
        warn "$VENV has no working Python any more: recreating it"
        rm -rf "$venv"
    fi
    choose_python
    say "creating the venv $VENV with $PYTHON ($(python_version "$PYTHON"))"
    mkdir -p "$(dirname "$venv")"
    "$PYTHON" -m venv "$venv"
}

venv_pip() {
    local -a cmd=("$ROOT$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
    ((VERBOSE)) || cmd+=(--quiet)
    # A 64-bit kernel under a 32-bit userland (Raspberry Pi OS armhf on a Pi 4 or 5) says aarch64;
    # linux32 makes pip see the 32-bit ARM it installs for, so uvloop is skipped there.
    if [[ $(getconf LONG_BIT) == 32 && $(uname -m) == aarch64 ]]; then
        cmd=(setarch linux32 "${cmd[@]}")
    fi
    "${cmd[@]}" "$@"
}

# Extras stay as chosen: from earlier runs (recorded), and `local` while the config is the local
# environment (the embedded moto server needs it), so a plain re-run or upgrade keeps them.
remembered_extras() {
    local extra config=$ROOT$CONF_DIR/config.toml
    if [[ -f $ROOT$STAMP_DIR/extras ]]; then
        for extra in $(tr ',' ' ' <"$ROOT$STAMP_DIR/extras"); do add_extra "$extra"; done
    fi
    if [[ -f $config ]] && grep -Eq '^env *= *"local"' "$config"; then add_extra local; fi
    EXTRAS=$(tr ',' '\n' <<<"$EXTRAS" | sed '/^$/d' | LC_ALL=C sort -u | paste -sd, -)
}

install_package() {
    local stamp=$ROOT$STAMP_DIR/package wanted requirement build
    remembered_extras
    wanted=$(fingerprint)
    if ((!FORCE)) && [[ -f $stamp && $(cat "$stamp") == "$wanted" ]] &&
        "$ROOT$VENV/bin/awsd" --version >/dev/null 2>&1; then
        say "$("$ROOT$VENV/bin/awsd" --version) is installed and unchanged"
        return
    fi
    local -a index=()
    if [[ -n $WHEELHOUSE ]]; then
        # Only the wheelhouse: no index, and no host pip configuration pulling one in.
        index=(--isolated --no-index --find-links "$WHEELHOUSE")
    fi
    local extras=${EXTRAS:+[$EXTRAS]}
    if [[ -n $SOURCE ]]; then
        # Build from a copy: pip builds in the tree it is given, and a stale build/ there would
        # leak deleted modules into the wheel (and leave root-owned files in your checkout).
        TMP=$(mktemp -d)
        build=$TMP/awsd-src
        mkdir -p "$build"
        (cd "$SOURCE" && tar -cf - --exclude=__pycache__ --exclude='*.pyc' pyproject.toml \
            README.md docs daemon configs systemd deploy) | tar -xf - -C "$build"
        requirement=$build$extras
    elif [[ -n $WHEEL ]]; then
        requirement=$WHEEL$extras
    else
        requirement=awsd$extras
    fi
    say "installing awsd${extras} into $VENV (pip; a few minutes on a Raspberry Pi)"
    venv_pip install "${index[@]}" --progress-bar off --upgrade "$requirement"
    # Same version number, different build: make sure the files are exactly the ones asked for.
    venv_pip install "${index[@]}" --force-reinstall --no-deps "$requirement"
    "$ROOT$VENV/bin/awsd" --version >/dev/null || die "the installed awsd does not run"
    mkdir -p "$ROOT$STAMP_DIR"
    printf '%s\n' "$wanted" >"$stamp"
    printf '%s\n' "$EXTRAS" >"$ROOT$STAMP_DIR/extras"
    PACKAGE_CHANGED=1
    say "installed $("$ROOT$VENV/bin/awsd" --version)"
}

# --- systemd unit, user, configuration ------------------------------------------------------------

systemd_version() { systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }'; }

install_units() {
    put_file "$ROOT$SHARE/systemd/awsd.service" "$ROOT$UNIT" 0644
    ((CHANGED)) && UNIT_CHANGED=1
    local want=$NOTIFY_RELOAD
    if [[ $want == auto ]]; then
        want=no
        if live && [[ $(systemd_version) -ge 253 ]]; then want=yes; fi
    fi
    if [[ $want == yes ]]; then
        put_file "$ROOT$SHARE/systemd/notify-reload.conf" "$ROOT$DROPIN" 0644
        ((CHANGED)) && UNIT_CHANGED=1
    elif [[ -f $ROOT$DROPIN ]]; then
        rm -f "$ROOT$DROPIN"
        rmdir --ignore-fail-on-non-empty "$(dirname "$ROOT$DROPIN")"
        say "removed ${DROPIN} (Type=notify-reload)"
        UNIT_CHANGED=1
    fi
    put_file "$ROOT$SHARE/systemd/awsd.sysusers" "$ROOT$SYSUSERS" 0644
}

# base.toml is ours until you edit it, like a Debian conffile: an unmodified copy follows
# upgrades; an edited one is kept, and when the shipped default changed too, the new default
# lands next to it as base.toml.dist.
install_base_config() {
    local shipped=$ROOT$SHARE/configs/base.toml dst=$ROOT$CONF_DIR/base.toml
    local record=$ROOT$STAMP_DIR/base.toml.sha256 recorded="" current
    [[ -f $record ]] && recorded=$(cat "$record")
    current=$(sha256 "$dst" 2>/dev/null || true)
    if [[ ! -f $dst || $current == "$(sha256 "$shipped")" || $current == "$recorded" ]]; then
        put_file "$shipped" "$dst" 0640 "$SERVICE_GID"
        remove "$dst.dist"
    elif [[ $(sha256 "$shipped") != "$recorded" ]]; then
        put_file "$shipped" "$dst.dist" 0640 "$SERVICE_GID"
        if ((CHANGED)); then
            warn "kept your edited ${CONF_DIR}/base.toml; the new default is base.toml.dist next" \
                "to it (diff -u ${CONF_DIR}/base.toml ${CONF_DIR}/base.toml.dist)"
        fi
    fi
    if [[ $recorded != "$(sha256 "$shipped")" ]]; then
        mkdir -p "$ROOT$STAMP_DIR"
        sha256 "$shipped" >"$record"
    fi
}

install_config() {
    local config=$ROOT$CONF_DIR/config.toml template
    ensure_dir "$ROOT$CONF_DIR" 0750 "$SERVICE_GID"
    install_base_config
    if [[ -f $config ]]; then
        local current
        current=$(sed -n 's/^env *= *"\([^"]*\)".*/\1/p' "$config" | head -n1)
        say "kept ${CONF_DIR}/config.toml (env ${current:-?})"
        if [[ -n $ENV_NAME && -n $current && $ENV_NAME != "$current" ]]; then
            warn "--env $ENV_NAME ignored: ${CONF_DIR}/config.toml exists (env $current);" \
                "start from ${SHARE}/configs/$ENV_NAME.toml to switch"
        fi
    else
        [[ -n $ENV_NAME ]] || ENV_NAME=$(detect_env)
        template=$ROOT$SHARE/configs/$ENV_NAME.toml
        if [[ $ENV_NAME == base || ! -f $template ]]; then
            die "no '$ENV_NAME' template; choose one of: $(templates "$ROOT$SHARE/configs")" 2
        fi
        TMP=${TMP:-$(mktemp -d)}
        {
            printf '# %s/config.toml, written by install.sh from the "%s" template (%s).\n' \
                "$CONF_DIR" "$ENV_NAME" "$("$ROOT$VENV/bin/awsd" --version)"
            printf '# Yours to edit: upgrades keep it. Then: sudo systemctl reload awsd\n'
            printf '# Reference: %s/docs/configuration-reference.md or "awsd schema";' "$SHARE"
            printf ' templates: %s/configs/\n\n' "$SHARE"
            cat "$template"
        } >"$TMP/config.toml"
        put_file "$TMP/config.toml" "$config" 0640 "$SERVICE_GID"
    fi
    if [[ ! -f $ROOT$DEFAULTS ]]; then
        TMP=${TMP:-$(mktemp -d)}
        cat >"$TMP/defaults" <<'EOF'
# Environment for the awsd service (systemd EnvironmentFile: KEY=value lines). Kept on upgrade.
# After a change: sudo systemctl restart awsd
#
# AWS_REGION=eu-west-1              # else the config, the profile, then EC2 metadata (IMDSv2)
# HTTPS_PROXY=http://proxy:3128     # an outbound proxy for AWS endpoints
# NO_PROXY=169.254.169.254          # keep the EC2 metadata service direct
# AWSD__LOG__LEVEL=debug            # any config key: AWSD__SECTION__KEY=value
# AWS_SHARED_CREDENTIALS_FILE=/etc/awsd/aws-credentials   # an IAM user's keys (Raspberry Pi)
EOF
        put_file "$TMP/defaults" "$ROOT$DEFAULTS" 0600
    fi
}

templates() { # templates DIR: the environment names a config can start from
    local names=() f
    for f in "$1"/*.toml; do
        f=$(basename "$f" .toml)
        [[ $f == base ]] || names+=("$f")
    done
    echo "${names[*]}"
}

# Check the config with the installed version before (re)starting anything, as the service would.
check_config() {
    local -a run=("$ROOT$VENV/bin/awsd" check-config --quiet --config "$ROOT$CONF_DIR/config.toml")
    if live; then
        run=(setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups "${run[@]}")
    fi
    if ! (
        cd /
        export STATE_DIRECTORY=$STATE_DIR
        if [[ -r $ROOT$DEFAULTS ]]; then
            set -a
            # shellcheck source=/dev/null
            . "$ROOT$DEFAULTS"
            set +a
        fi
        "${run[@]}"
    ); then
        local why="${CONF_DIR}/config.toml is invalid (above): fix it, then run this again"
        if live && ((PACKAGE_CHANGED)); then
            why+="; the running awsd keeps its old version until it restarts"
        fi
        die "$why" 78
    fi
    say "${CONF_DIR}/config.toml is valid"
}

# --- the service ---------------------------------------------------------------------------------

start_service() {
    if ! live; then
        if ((ENABLE)) && command -v systemctl >/dev/null; then
            systemctl --root="$ROOT" --quiet enable awsd.service 2>/dev/null ||
                warn "systemctl --root could not enable the unit in $ROOT"
        fi
        return
    fi
    ((UNIT_CHANGED || PACKAGE_CHANGED)) && systemctl daemon-reload
    if ((ENABLE)); then
        systemctl is-enabled --quiet awsd.service || systemctl --quiet enable awsd.service
    fi
    ((START)) || return 0
    if systemctl is-active --quiet awsd.service; then
        if ((UNIT_CHANGED || PACKAGE_CHANGED)); then
            say "restarting awsd (graceful: in-flight work finishes first)"
            systemctl restart awsd.service || service_failed
        fi
    else
        say "starting awsd"
        systemctl start awsd.service || service_failed
    fi
}

service_failed() {
    journalctl -u awsd.service -n 30 --no-pager >&2 || true
    die "awsd did not start: see above, and: systemctl status awsd; journalctl -u awsd"
}

summary() {
    local version
    version=$("$ROOT$VENV/bin/awsd" --version)
    if ! live; then
        note "$version staged under $ROOT"
        return
    fi
    local state
    state=$(systemctl is-active awsd.service 2>/dev/null || true)
    cat <<EOF

$version is installed (service: $state).
  status   systemctl status awsd        curl -s 127.0.0.1:9180/status
  logs     journalctl -u awsd -f        journalctl -u awsd -o json
  config   sudoedit ${CONF_DIR}/config.toml, then: sudo systemctl reload awsd
  check    sudo -u $SERVICE_USER ${VENV}/bin/awsd check-config
  state    ${STATE_DIR} (outbox, checkpoints; kept on upgrade and uninstall)
  upgrade  run install.sh again from the new release
  remove   sudo bash ${SHARE}/deploy/install.sh --uninstall [--purge]
EOF
}

# --- uninstall -----------------------------------------------------------------------------------

uninstall() {
    if live; then
        if systemctl cat awsd.service >/dev/null 2>&1; then
            systemctl disable --now --quiet awsd.service || true
            say "stopped and disabled awsd"
        fi
    elif [[ -f $ROOT$UNIT ]] && command -v systemctl >/dev/null; then
        systemctl --root="$ROOT" --quiet disable awsd.service 2>/dev/null || true
    fi
    remove "$ROOT$UNIT" "$ROOT$DROPIN"
    [[ -d $ROOT$UNIT_DIR/awsd.service.d ]] && rmdir --ignore-fail-on-non-empty "$ROOT$UNIT_DIR/awsd.service.d"
    if live; then
        systemctl daemon-reload
        systemctl reset-failed awsd.service 2>/dev/null || true
    fi
    remove "$ROOT$VENV"
    if ((PURGE)); then
        remove "$ROOT$CONF_DIR" "$ROOT$DEFAULTS" "$ROOT$STATE_DIR" "$ROOT/var/lib/private/awsd" \
            "$ROOT$SYSUSERS"
        remove_user
    else
        say "kept ${CONF_DIR}, ${DEFAULTS} and ${STATE_DIR} (--purge removes them)"
    fi
    if [[ -d $ROOT/etc/systemd/system/awsd.service.d ]]; then
        note "your drop-ins in /etc/systemd/system/awsd.service.d are left alone"
    fi
    note "awsd is uninstalled${ROOT:+ from $ROOT}"
}

remove() {
    local path
    for path in "$@"; do
        if [[ -e $path || -L $path ]]; then
            rm -rf "$path"
            say "removed ${path#"$ROOT"}"
        fi
    done
}

remove_user() {
    if live; then
        if getent passwd "$SERVICE_USER" >/dev/null; then
            userdel "$SERVICE_USER" 2>/dev/null || warn "could not remove the user $SERVICE_USER"
        fi
        if getent group "$SERVICE_USER" >/dev/null; then groupdel "$SERVICE_USER" 2>/dev/null || true; fi
        say "removed the user $SERVICE_USER"
    else
        local db
        for db in passwd group shadow gshadow; do
            if [[ -f $ROOT/etc/$db ]] && grep -q "^$SERVICE_USER:" "$ROOT/etc/$db"; then
                sed -i "/^$SERVICE_USER:/d" "$ROOT/etc/$db"
                say "removed $SERVICE_USER from /etc/$db"
            fi
        done
    fi
}

# --- main ----------------------------------------------------------------------------------------

main() {
    parse_args "$@"
    preflight
    if ((UNINSTALL)); then
        uninstall
        return
    fi
    ensure_venv
    install_package
    ensure_user "$ROOT$SHARE/systemd/awsd.sysusers"
    install_units
    install_config
    check_config
    start_service
    summary
}

main "$@"
