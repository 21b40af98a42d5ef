#!/bin/sh
# Writes an empty stand-in for every target Cargo.toml declares ([lib], [[bin]], [[bench]],
# [[test]], [[example]]) whose source file is missing. Cargo refuses to read a manifest that
# names a missing file, so deploy/Dockerfile runs this before building the dependencies alone
# (no sources copied yet, so a source change does not rebuild them) and again before the real
# build (benches and tests are not copied into the image). tests/kubernetes.rs replays the
# Dockerfile's build stage with it and checks that cargo accepts the manifest.
# Usage: sh stub-targets.sh [Cargo.toml]
set -eu
manifest="${1:-Cargo.toml}"
awk '
function value(line) {
    sub(/^[^=]*=[ \t]*["\047]/, "", line)
    sub(/["\047].*$/, "", line)
    return line
}
function flush() {
    if (kind != "") {
        if (path == "") {
            if (kind == "lib") path = "src/lib.rs"
            else if (kind == "bin") path = (name == pkg) ? "src/main.rs" : "src/bin/" name ".rs"
            else if (kind == "bench") path = "benches/" name ".rs"
            else if (kind == "test") path = "tests/" name ".rs"
            else if (kind == "example") path = "examples/" name ".rs"
        }
        print kind, path
    }
    kind = ""; name = ""; path = ""
}
/^[ \t]*\[/ {
    flush()
    table = $0
    sub(/[ \t]*#.*$/, "", table)
    gsub(/[ \t]/, "", table)
    if (table == "[lib]") kind = "lib"
    else if (table ~ /^\[\[(bin|bench|test|example)\]\]$/) {
        kind = table
        gsub(/[\[\]]/, "", kind)
    }
    next
}
table == "[package]" && /^[ \t]*name[ \t]*=/ { pkg = value($0) }
kind != "" && /^[ \t]*name[ \t]*=/ { name = value($0) }
kind != "" && /^[ \t]*path[ \t]*=/ { path = value($0) }
END { flush() }
' "$manifest" | while read -r kind path; do
    [ -e "$path" ] && continue
    mkdir -p "$(dirname "$path")"
    if [ "$kind" = lib ]; then
        : > "$path"
    else
        echo 'fn main() {}' > "$path"
    fi
    echo "stub-targets: $kind $path"
done
