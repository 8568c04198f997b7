#!/usr/bin/env bash
# test_layering: the floors of the code base hold. kernels/ is the bottom
# floor and includes nothing from core/; core/ sits on it and includes
# nothing from serve/ or train/ (which sit on top and may include both).
#
# Each quoted #include is resolved the way the compiler resolves it: the
# including file's folder first, then the Makefile's -I folders in order
# (CPPFLAGS: -Icore -Ikernels). Because -Icore comes first, a kernels/ file
# naming a header that exists in both folders would silently get core's, so
# for kernels/ a name that also exists under core/ is refused too.
#
# The check runs on the tree, then on a copy with bad includes planted, and
# must fail there naming each planted file and line, so it cannot pass by
# checking nothing.
set -uo pipefail
cd "$(dirname "$0")/.."

# check_tree ROOT: prints one line per violation (FILE:LINE: why) and the
# number of includes checked; returns 1 when any include breaks a floor.
check_tree() {
    local root=$1 bad=0 n=0 f line inc res dir
    local -a idirs
    read -ra idirs < <(sed -n 's/^CPPFLAGS *:= *//p' "$root/Makefile" | tr ' ' '\n' |
                       sed -n 's/^-I\([A-Za-z0-9_./-]*\)$/\1/p' | tr '\n' ' ')
    if [ "${#idirs[@]}" -eq 0 ]; then
        echo "$root/Makefile: no -I folders found in CPPFLAGS"
        return 1
    fi
    while IFS= read -r f; do
        while IFS=: read -r line inc; do
            [[ $inc =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]*)\" ]] || continue
            inc=${BASH_REMATCH[1]}
            n=$((n + 1))
            res=""
            for dir in "$(dirname "$f")" "${idirs[@]}"; do
                if [ -f "$root/$dir/$inc" ]; then
                    res=$(realpath -m --relative-to="$root" "$root/$dir/$inc")
                    break
                fi
            done
            if [ -z "$res" ]; then
                echo "$f:$line: \"$inc\" resolves to no file (folders: $(dirname "$f") ${idirs[*]})"
                bad=1
                continue
            fi
            case "$f" in
            kernels/*)
                if [ "${res%%/*}" != kernels ]; then
                    echo "$f:$line: \"$inc\" resolves to $res: kernels/ must not include from ${res%%/*}/"
                    bad=1
                elif [ -f "$root/core/$inc" ]; then
                    echo "$f:$line: \"$inc\" also names core/$inc: kernels/ headers must not share a name with core/ ones"
                    bad=1
                fi
                ;;
            core/*)
                case "${res%%/*}" in serve | train)
                    echo "$f:$line: \"$inc\" resolves to $res: core/ must not include from ${res%%/*}/"
                    bad=1
                    ;;
                esac
                ;;
            esac
        done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$root/$f")
    done < <(cd "$root" && find kernels core -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) | sort)
    echo "checked $n quoted includes in kernels/ and core/"
    [ "$n" -gt 0 ] && [ "$bad" -eq 0 ]
}

fail=0
echo "== the tree"
if ! check_tree .; then
    echo "FAIL: an include crosses a floor (above)"
    fail=1
fi

# The self-test: a copy with two planted violations, each of which must be
# reported with its file and line.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r Makefile kernels core serve train "$tmp"/
echo '#include "util.h"' >>"$tmp/kernels/cpu/ops.c"
k_line=$(wc -l <"$tmp/kernels/cpu/ops.c")
echo '#include "../train/trainer.h"' >>"$tmp/core/model.c"
c_line=$(wc -l <"$tmp/core/model.c")
echo "== a copy with bad includes planted at kernels/cpu/ops.c:$k_line and core/model.c:$c_line"
out=$(check_tree "$tmp")
rc=$?
echo "$out"
if [ "$rc" -eq 0 ]; then
    echo "FAIL: the check passed a tree with planted bad includes"
    fail=1
fi
for want in "kernels/cpu/ops.c:$k_line: \"util.h\" resolves to core/util.h" \
            "core/model.c:$c_line: \"../train/trainer.h\" resolves to train/trainer.h"; do
    if ! grep -qF "$want" <<<"$out"; then
        echo "FAIL: the check did not report: $want"
        fail=1
    fi
done
[ "$fail" -eq 0 ] && echo "layering: ok"
exit "$fail"
