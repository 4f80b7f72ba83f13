#!/usr/bin/env bash
# CI's container phase: build smriflow's image from this checkout with podman, run the demo in it without
# network, run anat_preproc in it on a mounted BIDS folder, and check that the derivatives on the host belong
# to the calling user and are byte-identical to the same run outside the container. Exits non-zero on any
# failure or difference. Called by .ci/run with the CI virtual environment active (its `smriflow` is the run
# outside the container); needs root (apt-get, debootstrap, rootful podman).
#
#   bash containers/ci.sh
#
# Phases (each prints its wall time):
#   1. tools   podman, runc and debootstrap from Debian when missing; podman's default file-descriptor
#              limits switched off (default_ulimits = [] in /etc/containers/containers.conf.d/), as this
#              machine refuses them.
#   2. base    no image registry is reachable, so the base image is Debian bookworm made with
#              `debootstrap --variant=minbase` plus a Python 3.11 virtual environment at /opt/venv (first on
#              PATH), then `podman import`ed as localhost/smriflow-base:<key>. The key is the hash of the
#              function below that makes it; the root filesystem's tarball is kept in $CACHE, the image in
#              podman's storage, so later CI runs (fresh clones on the same machine) skip this phase.
#   3. image   `podman build --build-arg BASE=<base> -f containers/Dockerfile` from a copy of the files the
#              recipe needs, with containers/constraints.txt replaced by the versions of smriflow's
#              dependencies in the CI environment (containers/pins.py; the run outside the container uses
#              them: same versions, same bytes). podman's
#              layer cache keeps the Python dependencies' layer until containers/Dockerfile, pyproject.toml
#              or those versions change; the source layer is rebuilt every time.
#   4. demo    `podman run --network=none` of `smriflow demo` (2 subjects at 3 mm) in a mounted folder.
#   5. run     `smriflow run anat_preproc` on the demo's BIDS folder (mounted read-only), once outside the
#              container and once inside it, at the same paths (the derivatives' provenance records them),
#              then compare ownership and every file's bytes (containers/compare_derivatives.py: all but the
#              run logs, named after their start time, and the packaged YAML files' locations).
#
# Environment: SMRIFLOW_CI_CACHE (default /var/cache/smriflow-ci), SMRIFLOW_CI_MIRROR (Debian mirror,
# default http://deb.debian.org/debian), SMRIFLOW_CI_KEEP=1 keeps the scratch folder.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${SMRIFLOW_CI_CACHE:-/var/cache/smriflow-ci}
MIRROR=${SMRIFLOW_CI_MIRROR:-http://deb.debian.org/debian}
IMAGE=localhost/smriflow:ci
PODMAN=(podman --cgroup-manager=cgroupfs --runtime=runc)
CONF=/etc/containers/containers.conf.d/smriflow-ci.conf
SUBJECTS=2
VOXEL_MM=3
SEED=7
USER_IDS="$(id -u):$(id -g)"

log() { echo "containers/ci.sh: $*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/smriflow-ci.XXXXXX")
chmod 755 "$SCRATCH"
cleanup() {
    local code=$?
    if ((code == 0)) && [[ ${SMRIFLOW_CI_KEEP:-0} != 1 ]]; then
        rm -rf "$SCRATCH"
    else
        log "scratch folder kept: $SCRATCH"
    fi
}
trap cleanup EXIT

declare -A SECONDS_OF
START=$(date +%s)
phase_start() {
    PHASE=$1
    PHASE_T0=$(date +%s)
    log "--- $PHASE"
}
phase_end() { # phase_end [NOTE]
    local took=$(($(date +%s) - PHASE_T0))
    SECONDS_OF[$PHASE]=$took
    log "$PHASE: ${took} s${1:+ ($1)}"
}

# ---------------------------------------------------------------------------------------------------- tools
phase_start tools
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ ! -f $CONF ]]; then
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "# written by smriflow containers/ci.sh: this machine refuses podman's default" \
        "# file-descriptor limits (nofile=1048576), so containers keep the caller's." \
        "[containers]" "default_ulimits = []" >"$CONF"
fi
command -v smriflow >/dev/null 2>&1 || die "no smriflow on PATH: activate the environment of the run outside the container"
phase_end "${missing[*]:+installed ${missing[*]}}"

# ----------------------------------------------------------------------------------------------------- base
build_base() { # build_base TARBALL: Debian bookworm (minbase) with a Python 3.11 venv at /opt/venv
    local rootfs=$SCRATCH/rootfs
    debootstrap --variant=minbase --include=python3,python3-venv,passwd,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$SCRATCH/debootstrap.log" 2>&1 ||
        {
            tail -n 20 "$SCRATCH/debootstrap.log" >&2
            die "debootstrap from $MIRROR"
        }
    printf '%s\n' "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main" >"$rootfs/etc/apt/sources.list"
    chroot "$rootfs" /usr/bin/python3 -m venv /opt/venv
    # shellcheck disable=SC2115 # rootfs is never empty (set above)
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/dev/*
    tar --numeric-owner -C "$rootfs" -cf "$1.part" . && mv "$1.part" "$1"
    rm -rf "$rootfs"
}
phase_start base
# PIP_CERT: pip trusts the system's CA bundle (Debian's pip does anyway; a pip from PyPI would not).
IMPORT_CHANGES=(--change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'ENV VIRTUAL_ENV=/opt/venv' --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt'
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python"]')
# Keys: the root filesystem's tarball, how it is made; the image, that and how it is imported.
TAR_KEY=$(declare -f build_base | sha256sum | cut -c1-12)
BASE=localhost/smriflow-base:$({ declare -f build_base; echo "${IMPORT_CHANGES[*]}"; } | sha256sum | cut -c1-12)
BASE_TAR=$CACHE/base-$TAR_KEY.tar
if "${PODMAN[@]}" image exists "$BASE"; then
    note="cached image $BASE"
else
    mkdir -p "$CACHE"
    if [[ -f $BASE_TAR ]]; then
        note="imported the cached $BASE_TAR"
    else
        build_base "$BASE_TAR"
        note="debootstrap + import"
    fi
    "${PODMAN[@]}" import --quiet "${IMPORT_CHANGES[@]}" "$BASE_TAR" "$BASE" >/dev/null
    find "$CACHE" -maxdepth 1 -name 'base-*.tar' ! -name "base-$TAR_KEY.tar" -delete # older recipes
    # podman's layer cache matches a base by its layers, not its settings: drop the layers built on the
    # older base, so that the image is rebuilt on this one.
    "${PODMAN[@]}" images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/smriflow-base:' |
        grep -v -x "$BASE" | xargs -r "${PODMAN[@]}" rmi >/dev/null || true
    "${PODMAN[@]}" rmi --force "$IMAGE" >/dev/null 2>&1 || true
    "${PODMAN[@]}" image prune -f >/dev/null
fi
"${PODMAN[@]}" run --rm --network=none "$BASE" python -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' ||
    die "the base image $BASE has no Python 3.11"
phase_end "$note"

# ---------------------------------------------------------------------------------------------------- image
phase_start image
CONTEXT=$SCRATCH/context
mkdir -p "$CONTEXT/containers"
cp -a pyproject.toml README.md smriflow workflows configs "$CONTEXT/"
cp -a containers/Dockerfile containers/warmup.py "$CONTEXT/containers/"
find "$CONTEXT" -name __pycache__ -prune -exec rm -rf {} +
# The versions of smriflow's dependencies (and theirs) in the environment that runs outside the container.
python containers/pins.py >"$CONTEXT/containers/constraints.txt"
# Files of a fresh clone have new times; the layer cache must depend on contents only.
find "$CONTEXT" -exec touch -h -d @0 {} +
# pip in the build trusts what this machine trusts (e.g. a proxy's certificate authority): the host's CA bundle
# is mounted over the base's for the build only (Debian's pip reads that file); the image keeps Debian's.
# (each line of the log starts with the time it was written: the slow steps are reported)
if ! "${PODMAN[@]}" build --isolation=chroot --layers --build-arg BASE="$BASE" \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    -f "$CONTEXT/containers/Dockerfile" -t "$IMAGE" "$CONTEXT" 2>&1 |
    while IFS= read -r line; do printf '%(%s)T %s\n' -1 "$line"; done >"$SCRATCH/build.log"; then
    tail -n 40 "$SCRATCH/build.log" >&2
    die "podman build (log: $SCRATCH/build.log)"
fi
steps=$(grep -c -E '^[0-9]+ STEP [0-9]+/' "$SCRATCH/build.log" || true)
cached=$(grep -c -E '^[0-9]+ --> Using cache' "$SCRATCH/build.log" || true)
slow=$(awk '$2 == "STEP" { if (step) print step, $1 - t; step = $3; t = $1 } { last = $1 }
    END { if (step) print step, last - t }' "$SCRATCH/build.log" | awk '$2 > 5 { printf "; step %s %d s", $1, $2 }')
"${PODMAN[@]}" image prune -f >/dev/null # images of older builds no tag points to
phase_end "$cached of $steps steps from the layer cache$slow"

# ----------------------------------------------------------------------------------------------------- demo
check_owner() { # check_owner DIR: everything under DIR belongs to the calling user
    local strangers
    strangers=$(find "$1" \( ! -uid "$(id -u)" -o ! -gid "$(id -g)" \) -printf '%u:%g %p\n' | head -n 5)
    [[ -z $strangers ]] || die "files under $1 do not belong to $USER_IDS: $strangers"
}
phase_start demo
DEMO=$SCRATCH/demo
mkdir -p "$DEMO"
"${PODMAN[@]}" run --rm --network=none --user "$USER_IDS" -v "$DEMO:$DEMO" "$IMAGE" \
    demo --subjects "$SUBJECTS" --voxel-size "$VOXEL_MM" --output-dir "$DEMO" --nprocs 2 ||
    die "smriflow demo in the container"
check_owner "$DEMO"
phase_end "$SUBJECTS subjects at $VOXEL_MM mm, --network=none"

# ------------------------------------------------------------------------------------------------------ run
phase_start run
BIDS=$DEMO/bids
LABEL=$(basename "$(find "$BIDS" -maxdepth 1 -name 'sub-*' | sort | head -n 1)")
RUN=$SCRATCH/run # the same path outside and inside the container
ARGS=(run anat_preproc --bids-dir "$BIDS" --output-dir "$RUN/derivatives" --work-dir "$RUN/work"
    --participant-label "$LABEL" --seed "$SEED" --omp-nthreads 1 --nprocs 2)
t0=$(date +%s)
smriflow "${ARGS[@]}" >"$SCRATCH/run-host.log" 2>&1 ||
    {
        tail -n 30 "$SCRATCH/run-host.log" >&2
        die "smriflow ${ARGS[*]} outside the container"
    }
host_s=$(($(date +%s) - t0))
mv "$RUN" "$SCRATCH/run-host"
mkdir -p "$RUN"
t0=$(date +%s)
"${PODMAN[@]}" run --rm --network=none --user "$USER_IDS" -v "$BIDS:$BIDS:ro" -v "$RUN:$RUN" "$IMAGE" \
    "${ARGS[@]}" || die "smriflow ${ARGS[*]} in the container"
container_s=$(($(date +%s) - t0))
check_owner "$RUN"
python containers/compare_derivatives.py "$SCRATCH/run-host/derivatives" "$RUN/derivatives" ||
    die "the derivatives made in the container differ from those made outside it (above)"
nfiles=$(find "$RUN/derivatives" -type f ! -path '*/logs/run-*' | wc -l)
((nfiles > 0)) || die "anat_preproc wrote no derivatives"
phase_end "$LABEL: outside ${host_s} s, inside ${container_s} s; $nfiles files byte-identical (run logs aside), owned by $USER_IDS"

log "--- wall times: $(for p in tools base image demo run; do printf '%s %s s; ' "$p" "${SECONDS_OF[$p]}"; done)total $(($(date +%s) - START)) s"
log "passed"
