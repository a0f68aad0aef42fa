#!/usr/bin/env bash
# Build the Apptainer images the rules name (config `containers`) from containers/*.def, whose pins
# are those of envs/*.yaml (tests/test_containers.py keeps them equal):
#
#   make images                          # = cluster/build-images.sh (all of them)
#   cluster/build-images.sh train eval   # some of them
#   FORCE=1 cluster/build-images.sh      # rebuild even when the .sif is newer than its sources
#
# Run it from anywhere on a machine with apptainer (or singularity) and internet (the base image
# comes from nvcr.io, the packages from PyPI); a GPU is not needed. Without root it builds with
# --fakeroot (set APPTAINER_BUILD_ARGS to change that, e.g. "--remote" or ""). The images copy the
# compass package in, so rebuild them after changing compass/ (this script does when compass/ or
# the .def is newer than the image). Each build runs the image's %test (`compass --help`).
# Output: containers/<name>.sif, written atomically (a failed build leaves no .sif).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'build-images: %s\n' "$*" >&2; exit 1; }

APPTAINER="${APPTAINER:-$(command -v apptainer || command -v singularity || true)}"
[[ -n "$APPTAINER" ]] || die "apptainer (or singularity) not found: install it (https://apptainer.org/docs/admin/main/installation.html) or build on a machine that has it"
if [[ -z "${APPTAINER_BUILD_ARGS+x}" ]]; then
    if [[ $(id -u) -eq 0 ]]; then APPTAINER_BUILD_ARGS=""; else APPTAINER_BUILD_ARGS="--fakeroot"; fi
fi

names=("$@")
if ((${#names[@]} == 0)); then
    for def in containers/*.def; do names+=("$(basename "$def" .def)"); done
fi

for name in "${names[@]}"; do
    def="containers/$name.def"
    sif="containers/$name.sif"
    [[ -f "$def" ]] || die "$def not found (images: $(ls containers/*.def | xargs -n1 basename | sed 's/\.def$//' | paste -sd' ' -))"
    if [[ -z "${FORCE:-}" && -f "$sif" ]] && [[ -z "$(find "$def" envs/"$name".yaml pyproject.toml compass -newer "$sif" -print -quit 2>/dev/null)" ]]; then
        echo "build-images: $sif is up to date"
        continue
    fi
    echo "build-images: $APPTAINER build $APPTAINER_BUILD_ARGS $sif $def"
    tmp="$sif.partial"
    rm -f "$tmp"
    # shellcheck disable=SC2086
    if ! "$APPTAINER" build $APPTAINER_BUILD_ARGS "$tmp" "$def"; then
        rm -f "$tmp"
        die "building $sif failed"
    fi
    mv -f "$tmp" "$sif"
    echo "build-images: wrote $sif ($(du -h "$sif" | cut -f1))"
done
