#!/usr/bin/env bash
# Vendors GraphiQL and the React it runs on, from the npm registry, into this folder:
# the files src/http/graphiql.rs embeds in the binary, so that GraphiQL at `/` needs no
# network beyond the API itself (ADR 0009).
#
#   assets/graphiql/refresh.sh                       # the versions below
#   GRAPHIQL=4.1.2 REACT=18.3.1 assets/graphiql/refresh.sh
#
# Each package lands in a folder named by its version (the versioned URL paths, served
# with a year-long immutable Cache-Control), byte for byte as npm ships it (npm checks
# the tarballs' integrity), with its licence; SHA256SUMS records what was vendored.
# Old versions' folders are removed, so src/http/graphiql.rs stops compiling until its
# paths name the new ones: change the versions there in the same commit.
#
# Why these builds: GraphiQL 4 is the last major that ships a UMD bundle
# (graphiql.min.js, React as a global) and React 18 the last with UMD production builds;
# GraphiQL 5 is ESM only, with Monaco's web workers loaded from a CDN by default.
set -euo pipefail

GRAPHIQL="${GRAPHIQL:-4.1.2}"
REACT="${REACT:-18.3.1}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT

(cd "${scratch}" && npm pack --silent "graphiql@${GRAPHIQL}" "react@${REACT}" "react-dom@${REACT}" >/dev/null)

# vendor PACKAGE VERSION FILE...: the package's FILEs and LICENSE into PACKAGE-VERSION/.
vendor() {
    local package="$1" version="$2"
    shift 2
    local unpacked="${scratch}/${package}"
    mkdir -p "${unpacked}"
    tar -xzf "${scratch}/${package}-${version}.tgz" -C "${unpacked}"
    find "${here}" -mindepth 1 -maxdepth 1 -type d -name "${package}-*" -exec rm -rf {} +
    mkdir -p "${here}/${package}-${version}"
    for file in "$@" LICENSE; do
        cp "${unpacked}/package/${file}" "${here}/${package}-${version}/$(basename "${file}")"
    done
}

vendor graphiql "${GRAPHIQL}" graphiql.min.js graphiql.min.css
vendor react "${REACT}" umd/react.production.min.js
vendor react-dom "${REACT}" umd/react-dom.production.min.js

(cd "${here}" && find . -mindepth 2 -type f | sort | xargs sha256sum >SHA256SUMS)
echo "vendored graphiql@${GRAPHIQL}, react@${REACT} and react-dom@${REACT} into ${here}"
