#!/usr/bin/env bash
# Regenerates Shared/Wire/Generated/*.pb.swift from Shared/Wire/Protos (the generated Swift is committed,
# so a normal build needs no protoc). Needs protoc (Debian: protobuf-compiler) and protoc-gen-swift,
# built from the swift-protobuf version Package.swift names:
#   swift build -c release --product protoc-gen-swift      (about 10 minutes on 2 cores, once)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
PLUGIN="${PROTOC_GEN_SWIFT:-$ROOT/.build/release/protoc-gen-swift}"
[[ -x "$PLUGIN" ]] || { echo "protoc-gen-swift not found at $PLUGIN; build it: swift build -c release --product protoc-gen-swift" >&2; exit 1; }
mkdir -p Shared/Wire/Generated
protoc --plugin=protoc-gen-swift="$PLUGIN" --proto_path=Shared/Wire/Protos \
    --swift_out=Shared/Wire/Generated --swift_opt=Visibility=Public,FileNaming=DropPath \
    Shared/Wire/Protos/tributary/v1/*.proto
echo "generated: $(ls Shared/Wire/Generated)"
