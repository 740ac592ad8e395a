"""Privacy interop check for Tink for Python (make interop).

Reads the golden vectors Go writes (internal/privacy/testdata/interop): EnrichedSession records in
Avro single-object encoding whose personal fields are encrypted, the wrapped data keys as the
keys topic holds them, and the development key-encryption keyset. Decrypts every field with the
official Tink library, with associated data topic NUL sessionId NUL path, and requires the
tampered and moved cases to fail authentication. Then decrypts the encrypted archive objects of
objects.json (what the archiver writes under privacy.mode encrypt) with Tink's streaming AEAD:
the object's keyset is unwrapped with the data key its header names, both with associated data
"idnow.archive.v1" NUL sessionId NUL vaultEntryId, and the plaintext's SHA-256 must match; the
tampered and moved objects must fail. Exit 0 when all cases behave, 1 otherwise.

    python check.py <repository root>
"""

import base64
import hashlib
import io
import json
import os
import struct
import sys

import fastavro
import tink
from tink import aead, secret_key_access, streaming_aead


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
    return 1 if failures + check_objects(vectors, kek) else 0


def open_object(raw: bytes, data_keys: dict, session_id: str, vault_entry_id: str) -> bytes:
    """Decrypts one archive object: "IDNWARC1", uint32 big-endian header length, JSON header,
    Tink streaming AEAD ciphertext. The associated data comes from what the reader expects (the
    archive manifest's session and file), so an object moved elsewhere fails."""
    if raw[:8] != b"IDNWARC1":
        raise ValueError("not an encrypted archive object")
    (n,) = struct.unpack(">I", raw[8:12])
    header = json.loads(raw[12 : 12 + n])
    ad = b"\x00".join(x.encode() for x in ("idnow.archive.v1", session_id, vault_entry_id))
    dek = data_keys[header["keyName"]]
    handle = tink.proto_keyset_format.parse_encrypted(base64.b64decode(header["keyset"]), dek, ad)
    saead = handle.primitive(streaming_aead.StreamingAead)
    digest = hashlib.sha256()
    with saead.new_decrypting_stream(io.BytesIO(raw[12 + n :]), ad) as stream:
        while chunk := stream.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def check_objects(vectors: str, kek) -> int:
    streaming_aead.register()
    with open(os.path.join(vectors, "objects.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    data_keys = {
        name: tink.proto_keyset_format.parse_encrypted(base64.b64decode(wrapped), kek, b"").primitive(aead.Aead)
        for name, wrapped in manifest["keys"].items()
    }
    failures = 0
    for case in manifest["objects"]:
        with open(os.path.join(vectors, case["file"]), "rb") as f:
            raw = bytearray(f.read())
        if case.get("flipByte"):
            raw[case["flipByte"]] ^= 1
        try:
            digest = open_object(bytes(raw), data_keys, case["sessionId"], case["vaultEntryId"])
        except tink.TinkError as e:
            if case.get("fail"):
                print(f"ok    {case['name']:<15} refused as it must be ({type(e).__name__})")
            else:
                print(f"FAIL  {case['name']}: {e}")
                failures += 1
            continue
        if case.get("fail"):
            print(f"FAIL  {case['name']}: decrypted, want an authentication failure")
            failures += 1
        elif digest != case["plaintextSha256"]:
            print(f"FAIL  {case['name']}: plaintext sha256 {digest}, want {case['plaintextSha256']}")
            failures += 1
        else:
            print(f"ok    {case['name']:<15} {case['plaintextSize']} bytes decrypted with Tink streaming AEAD, sha256 matches")
    return failures


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
