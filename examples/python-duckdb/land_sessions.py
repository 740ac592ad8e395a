#!/usr/bin/env python3
"""Land idnow.sessions.enriched in Parquet and ask DuckDB how many sessions ended per flow and
outcome today.

    python land_sessions.py land  --bootstrap kafka:9092 --registry-url http://registry:8080/apis/ccompat/v7
    python land_sessions.py query
    python land_sessions.py run   ...   # land, then query

`land` reads the topic with read_committed (the enricher writes in Kafka transactions) in a
consumer group, so each run lands only what is new, decodes every record into the current
EnrichedSession schema with Avro schema resolution, whatever version wrote it, and writes one
Parquet file per run under --out-dir. Both wire formats are read:

* Confluent (the connector with schema_registry.url): the writer schema is fetched from the
  registry by the id in the record, once per id;
* Avro single-object (no registry): the writer schema is found by its CRC-64-AVRO fingerprint
  among the released versions in schemas/history and the current schema.

`query` counts, per flow and outcome, the sessions whose latest enriched state was written today
(UTC), one row per session even when the landed files hold several events of it or the same event
twice. README.md explains the columns.
"""

import argparse
import datetime as dt
import glob
import io
import json
import os
import struct
import sys
import urllib.request

import duckdb
import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaException, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMAS = os.path.normpath(os.path.join(HERE, "..", "..", "schemas"))

# CRC-64-AVRO (Rabin) as the Avro specification defines it for single-object encoding.
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
    return struct.pack("<Q", fp)  # little-endian, as in the record header


def load_schema(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def fingerprint(schema_json) -> bytes:
    canonical = fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(schema_json))
    return crc64_avro(canonical.encode("utf-8"))


class Decoder:
    """Decodes EnrichedSession records in either wire format into the current reader schema."""

    def __init__(self, schemas_dir, registry_url):
        self.reader = fastavro.parse_schema(load_schema(os.path.join(schemas_dir, "enriched_session.avsc")))
        # Every released version, and the current file, by fingerprint.
        self.by_fingerprint = {}
        paths = sorted(glob.glob(os.path.join(schemas_dir, "history", "enriched_session", "v*.avsc")))
        for path in paths + [os.path.join(schemas_dir, "enriched_session.avsc")]:
            s = load_schema(path)
            self.by_fingerprint[fingerprint(s)] = fastavro.parse_schema(s)
        self.registry_url = registry_url.rstrip("/") if registry_url else ""
        self.by_id = {}

    def writer_for_id(self, schema_id):
        if schema_id not in self.by_id:
            if not self.registry_url:
                raise ValueError(f"record written with registry schema id {schema_id}, but no --registry-url was given")
            with urllib.request.urlopen(f"{self.registry_url}/schemas/ids/{schema_id}", timeout=10) as resp:
                body = json.load(resp)
            self.by_id[schema_id] = fastavro.parse_schema(json.loads(body["schema"]))
        return self.by_id[schema_id]

    def decode(self, value: bytes):
        if len(value) >= 10 and value[0] == 0xC3 and value[1] == 0x01:
            writer = self.by_fingerprint.get(value[2:10])
            if writer is None:
                raise ValueError(
                    f"single-object record with schema fingerprint {value[2:10].hex()}, which is no version in "
                    f"schemas/history/enriched_session: update the schemas directory (--schemas-dir)")
            body = value[10:]
        elif len(value) >= 5 and value[0] == 0:
            writer = self.writer_for_id(struct.unpack(">I", value[1:5])[0])
            body = value[5:]
        else:
            raise ValueError(f"neither Confluent wire format nor Avro single-object encoding (starts {value[:2].hex()})")
        return fastavro.schemaless_reader(io.BytesIO(body), writer, self.reader)


# One row per enriched record: what the analytics question needs, flat. Timestamps are UTC.
ROW_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("event_name", pa.string()),
    ("event_sequence", pa.int64()),
    ("session_id", pa.string()),
    ("flow_id", pa.string()),
    ("environment", pa.string()),
    ("status", pa.string()),
    ("terminal", pa.bool_()),
    ("outcome", pa.string()),
    ("created_at", pa.timestamp("ms", tz="UTC")),
    ("completed_at", pa.timestamp("ms", tz="UTC")),
    ("enriched_at", pa.timestamp("ms", tz="UTC")),
    ("data_blocks", pa.int32()),
    ("truncation", pa.string()),
    ("connector_version", pa.string()),
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
])


def to_row(rec, partition, offset):
    s, e, en = rec["session"], rec["event"], rec["enrichment"]
    return {
        "event_id": e["eventId"], "event_name": e["eventName"], "event_sequence": e.get("eventSequence"),
        "session_id": s["sessionId"], "flow_id": s.get("flowId"), "environment": s.get("environment"),
        "status": s["status"], "terminal": s["terminal"], "outcome": s.get("outcome"),
        "created_at": s.get("createdAt"), "completed_at": s.get("completedAt"), "enriched_at": en["enrichedAt"],
        "data_blocks": len(rec.get("dataBlocks") or []), "truncation": en.get("truncation"),
        "connector_version": en["connectorVersion"], "kafka_partition": partition, "kafka_offset": offset,
    }


def land(args):
    decoder = Decoder(args.schemas_dir, args.registry_url)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    try:
        meta = consumer.list_topics(args.topic, timeout=10)
        tmeta = meta.topics.get(args.topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            raise SystemExit(f"topic {args.topic} not found on {args.bootstrap}")
        # Read up to the end offsets taken now; a transactional topic's last offsets can be
        # commit markers, so progress is judged by the consumer's position, not the last record.
        ends = {p: consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)[1] for p in tmeta.partitions}
        consumer.subscribe([args.topic])
        rows, errors = [], 0
        deadline = dt.datetime.now() + dt.timedelta(seconds=args.timeout)
        while dt.datetime.now() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                if msg.error():
                    raise KafkaException(msg.error())
                try:
                    rows.append(to_row(decoder.decode(msg.value()), msg.partition(), msg.offset()))
                except (ValueError, EOFError, KeyError) as err:
                    errors += 1
                    print(f"skipping {msg.topic()}[{msg.partition()}]@{msg.offset()}: {err}", file=sys.stderr)
            assigned = consumer.assignment()
            if len(assigned) == len(ends):
                positions = consumer.position(assigned)
                if all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in positions):
                    break
        else:
            raise SystemExit(f"did not reach the end of {args.topic} within {args.timeout}s ({len(rows)} records read)")
        os.makedirs(args.out_dir, exist_ok=True)
        if rows:
            path = os.path.join(args.out_dir, f"enriched-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S%f}.parquet")
            pq.write_table(pa.Table.from_pylist(rows, schema=ROW_SCHEMA), path)
            print(f"landed {len(rows)} records in {path}", file=sys.stderr)
        else:
            print("nothing new to land", file=sys.stderr)
        # Committed only after the file is written: a crash before lands the records again,
        # and the query counts each session once anyway.
        consumer.commit(asynchronous=False)
        if errors:
            raise SystemExit(f"{errors} records could not be decoded (see above)")
    finally:
        consumer.close()


QUERY = """
WITH records AS (
    SELECT DISTINCT ON (event_id) * FROM read_parquet($files)
    ORDER BY event_id
), latest AS (
    -- One session's records share a key, so they are in one partition in enrichment order.
    SELECT * FROM records
    QUALIFY row_number() OVER (PARTITION BY session_id ORDER BY kafka_offset DESC) = 1
)
SELECT coalesce(flow_id, '(none)') AS flow_id,
       coalesce(outcome, '(none)') AS outcome,
       count(*) AS sessions
FROM latest
WHERE CAST(timezone('UTC', enriched_at) AS DATE) = CAST($day AS DATE)
GROUP BY ALL
ORDER BY flow_id, outcome
"""


def query(args):
    files = sorted(glob.glob(os.path.join(args.out_dir, "*.parquet")))
    if not files:
        raise SystemExit(f"no Parquet files under {args.out_dir}: run `land` first")
    day = args.day or dt.datetime.now(dt.timezone.utc).date().isoformat()
    rows = duckdb.connect().execute(QUERY, {"files": files, "day": day}).fetchall()
    print(f"sessions per flow and outcome on {day} (UTC), latest state of each session:")
    print(f"{'flow_id':<40} {'outcome':<12} {'sessions':>8}")
    for flow, outcome, n in rows:
        print(f"{flow:<40} {outcome:<12} {n:>8}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([{"flow_id": r[0], "outcome": r[1], "sessions": r[2]} for r in rows], f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("land", "query", "run"):
        p = sub.add_parser(name)
        p.add_argument("--out-dir", default="landed", help="folder of the Parquet files (default ./landed)")
        if name in ("land", "run"):
            p.add_argument("--bootstrap", default="localhost:29092", help="Kafka bootstrap servers")
            p.add_argument("--topic", default="idnow.sessions.enriched")
            p.add_argument("--group", default="idnow-parquet-lander", help="consumer group (keeps what was landed)")
            p.add_argument("--registry-url", default=os.environ.get("SCHEMA_REGISTRY_URL", ""),
                           help="Confluent-compatible registry API (Apicurio: .../apis/ccompat/v7); default $SCHEMA_REGISTRY_URL")
            p.add_argument("--schemas-dir", default=DEFAULT_SCHEMAS, help="the connector's schemas/ folder")
            p.add_argument("--timeout", type=float, default=120, help="seconds to reach the end of the topic")
        if name in ("query", "run"):
            p.add_argument("--day", help="UTC day YYYY-MM-DD (default today)")
            p.add_argument("--json", help="also write the result rows to this JSON file")
    args = ap.parse_args()
    if args.cmd in ("land", "run"):
        land(args)
    if args.cmd in ("query", "run"):
        query(args)


if __name__ == "__main__":
    main()
