"""Privacy interop check for Tink for Python (make interop).

Reads the golden vectors Go writes (internal/privacy/testdata/interop): EnrichedSession records in
Avro single-object encoding whose personal fields are encrypted, the wrapped data keys as the
keys topic holds them, and the development key-encryption keyset. Decrypts every field with the
official Tink library, with associated data topic NUL sessionId NUL path, and requires the
tampered and moved cases to fail authentication. Exit 0 when all cases behave, 1 otherwise.

    python check.py <repository root>
"""

import base64
import io
import json
import os
import sys

import fastavro
import tink
from tink import aead, secret_key_access


def main(root: str) -> int:
    vectors = os.path.join(root, "internal", "privacy", "testdata", "interop")
    with open(os.path.join(vectors, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    aead.register()
    with open(os.path.join(vectors, manifest["kek"]), encoding="utf-8") as f:
        kek = tink.json_proto_keyset_format.parse(f.read(), secret_key_access.TOKEN).primitive(aead.Aead)
    keys = {
        name: tink.proto_keyset_format.parse_encrypted(base64.b64decode(wrapped), kek, b"").primitive(aead.Aead)
        for name, wrapped in manifest["keys"].items()
    }
    with open(os.path.join(root, manifest["schema"]), encoding="utf-8") as f:
        schema = fastavro.parse_schema(json.load(f))
    failures = 0
    for case in manifest["cases"]:
        with open(os.path.join(vectors, case["record"]), "rb") as f:
            raw = f.read()
        if raw[:2] != b"\xc3\x01":
            print(f"FAIL  {case['name']}: not Avro single-object encoding")
            failures += 1
            continue
        record = fastavro.schemaless_reader(io.BytesIO(raw[10:]), schema)
        env = record["privacy"]
        key = keys[env["keyName"]]
        session_id = record["session"]["sessionId"]
        ok, failed = 0, []
        for path, ciphertext in sorted(env["encrypted"].items()):
            ad = b"\x00".join(x.encode() for x in (manifest["topic"], session_id, path))
            try:
                plain = key.decrypt(ciphertext, ad).decode("utf-8")
            except tink.TinkError:
                failed.append(path)
                continue
            if plain != case["plaintext"].get(path):
                print(f"FAIL  {case['name']}: {path} decrypted to {plain!r}, want {case['plaintext'].get(path)!r}")
                failures += 1
            ok += 1
        want_failed = [case["failPath"]] if case.get("failPath") else []
        if failed != want_failed:
            print(f"FAIL  {case['name']}: authentication failed for {failed}, want exactly {want_failed}")
            failures += 1
            continue
        print(f"ok    {case['name']:<10} {ok} fields decrypted" + (f", {want_failed[0]} refused as it must be" if want_failed else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
