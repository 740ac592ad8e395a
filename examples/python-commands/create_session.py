#!/usr/bin/env python3
"""Send one CreateSessionCommand to the connector's commands topic and print the player URL from
its CommandReply: the request/reply pattern of docs/commands.md with confluent-kafka and fastavro.

    python create_session.py --bootstrap localhost:9092 --flow AutoIdent --subject customer-42
    python create_session.py --bootstrap kafka:9092 --registry-url http://registry:8080/apis/ccompat/v7 ...

Both wire formats the connector reads are written and read:

* with --registry-url (the connector with schema_registry.url): Confluent framing, the command
  schema registered under <commands topic>-value, the reply's writer schema fetched by its id;
* without: Avro single-object encoding (C3 01, CRC-64-AVRO fingerprint, body), the reply decoded
  with the current CommandReply schema (the one its fingerprint names).

Exit status 0 with the player URL on stdout; 1 with the failure's reason class and message.
"""

import argparse
import io
import json
import os
import struct
import sys
import time
import urllib.request
import uuid

import fastavro
from confluent_kafka import Consumer, Producer, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMAS = os.path.normpath(os.path.join(HERE, "..", "..", "schemas"))

# CRC-64-AVRO (Rabin), as the Avro specification defines it for single-object encoding.
_EMPTY = 0xC15D213AA4D7A795
_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data: bytes) -> bytes:
    fp = _EMPTY
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ b) & 0xFF]
    return struct.pack("<Q", fp)


def load(schemas_dir, name):
    with open(os.path.join(schemas_dir, name), encoding="utf-8") as f:
        text = f.read()
    return text, fastavro.parse_schema(json.loads(text))


def registry(url, method, path, body=None):
    req = urllib.request.Request(url.rstrip("/") + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def encode(schema, text, value, registry_url, subject):
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, value)
    if registry_url:
        schema_id = registry(registry_url, "POST", f"/subjects/{subject}/versions", {"schema": text})["id"]
        return b"\x00" + struct.pack(">I", schema_id) + body.getvalue()
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    return b"\xc3\x01" + crc64_avro(canonical.encode()) + body.getvalue()


def decode(reader, value, registry_url, writers):
    if value[:1] == b"\x00" and registry_url:
        schema_id = struct.unpack(">I", value[1:5])[0]
        if schema_id not in writers:
            text = registry(registry_url, "GET", f"/schemas/ids/{schema_id}")["schema"]
            writers[schema_id] = fastavro.parse_schema(json.loads(text))
        return fastavro.schemaless_reader(io.BytesIO(value[5:]), writers[schema_id], reader)
    if value[:2] == b"\xc3\x01":
        return fastavro.schemaless_reader(io.BytesIO(value[10:]), reader, reader)
    raise ValueError("the reply is neither Confluent-framed nor single-object encoded")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="localhost:9092")
    ap.add_argument("--commands-topic", default="idnow.commands")
    ap.add_argument("--replies-topic", default="idnow.commands.replies")
    ap.add_argument("--registry-url", default=os.environ.get("SCHEMA_REGISTRY_URL", ""))
    ap.add_argument("--schemas-dir", default=DEFAULT_SCHEMAS)
    ap.add_argument("--flow", default="AutoIdent", help="the flow's name as GET /flows lists it")
    ap.add_argument("--subject", default="customer-42", help="pseudonymous id: metadata.subjectId and record key")
    ap.add_argument("--redirect-url", default=None)
    ap.add_argument("--command-id", default=None, help="default: a new UUID")
    ap.add_argument("--timeout", type=float, default=30)
    args = ap.parse_args()

    cmd_text, cmd_schema = load(args.schemas_dir, "create_session_command.avsc")
    _, reply_schema = load(args.schemas_dir, "command_reply.avsc")
    command_id = args.command_id or str(uuid.uuid4())

    # 1. Where the replies topic ends now: the reply will come after that.
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "unused-" + command_id, "enable.metrics.push": False,
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    meta = consumer.list_topics(args.replies_topic, timeout=10)
    parts = meta.topics[args.replies_topic].partitions
    if not parts:
        sys.exit(f"topic {args.replies_topic} does not exist; is the commands role running?")
    assign = []
    for p in parts:
        _, high = consumer.get_watermark_offsets(TopicPartition(args.replies_topic, p), timeout=10)
        assign.append(TopicPartition(args.replies_topic, p, high))
    consumer.assign(assign)

    # 2. The command: key = subject, header idnow.command.id.
    command = {"commandId": command_id, "flowId": None, "flowName": args.flow, "environment": None,
               "input": {}, "metadata": {"subjectId": args.subject}, "redirectUrl": args.redirect_url,
               "state": None, "deadline": None}
    value = encode(cmd_schema, cmd_text, command, args.registry_url, args.commands_topic + "-value")
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True, "acks": "all", "enable.metrics.push": False})
    producer.produce(args.commands_topic, key=args.subject.encode(), value=value,
                     headers=[("idnow.command.id", command_id.encode())])
    if producer.flush(10) != 0:
        sys.exit("the command was not acknowledged within 10 s")

    # 3. Replies committed after that point, until the one for this command id.
    writers = {}
    deadline = time.monotonic() + args.timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                sys.exit(f"consume {args.replies_topic}: {msg.error()}")
            if dict(msg.headers() or []).get("idnow.command.id", b"").decode() != command_id:
                continue
            reply = decode(reply_schema, msg.value(), args.registry_url, writers)
            if reply["failed"] is not None:
                print(f"command {command_id} failed ({reply['failed']['reason']}): {reply['failed']['message']}", file=sys.stderr)
                sys.exit(1)
            created = reply["created"]
            print(f"session {created['sessionId']} (flow {created['flowId']}) created for command {command_id}", file=sys.stderr)
            if created["playerUrl"] is None:
                sys.exit("IDnow gave no player URL for the recovered session; send a new command")
            print(created["playerUrl"])
            return
    finally:
        consumer.close()
    sys.exit(f"no reply to command {command_id} within {args.timeout} s")


if __name__ == "__main__":
    main()
