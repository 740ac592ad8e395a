package io.idnow.connector.interop;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.avro.LogicalType;
import org.apache.avro.LogicalTypes;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.util.Utf8;

/**
 * Reads the connector's interop vectors (written by schemas/interop_test.go) with Apache Avro for
 * Java and checks each one three ways, so a record that only the Go library could read fails here:
 *
 * <ol>
 *   <li>the framing is what a Java consumer expects: single-object records go through {@link
 *       BinaryMessageDecoder}, which checks the 0xC3 0x01 marker and looks the CRC-64-AVRO
 *       fingerprint up the Java way; Confluent records must start with magic 0 and the schema id
 *       from the manifest, and their body must be consumed to the last byte;
 *   <li>the decoded record equals the record Java's own JsonDecoder reads from the Avro JSON
 *       expectation, and Java's binary encoder writes the decoded record back to exactly the body
 *       bytes the connector wrote;
 *   <li>every probe (a field path and its value taken from the Go value) matches, timestamps
 *       rendered through the schema's timestamp-millis logical type.
 * </ol>
 *
 * <p>Usage: {@code InteropCheck <schemas dir> <vectors dir>}. Prints one line per vector and exits
 * 1 if any vector fails, 2 on bad usage or unreadable input.
 */
public final class InteropCheck {
  private static final DateTimeFormatter MILLIS =
      DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);
  private static final Pattern INDEXED = Pattern.compile("(.+)\\[(\\d+)]");

  private InteropCheck() {}

  /** One manifest line: a case name, its schema file and full name, and its registry id. */
  private record Entry(String name, String avsc, String fullName, int schemaId) {}

  /** A field path and its expected rendered value; null means the field must be null. */
  private record Probe(String path, String value) {}

  /** A check that did not hold; its message says what differs. */
  private static final class Mismatch extends Exception {
    private static final long serialVersionUID = 1L;

    Mismatch(String message) {
      super(message);
    }
  }

  /**
   * Checks every vector named in the manifest.
   *
   * @param args the schemas directory and the vectors directory
   */
  public static void main(String[] args) {
    if (args.length != 2) {
      System.err.println("usage: InteropCheck <schemas dir> <vectors dir>");
      System.exit(2);
    }
    Path schemasDir = Path.of(args[0]);
    Path vectors = Path.of(args[1]);
    List<Entry> entries;
    try {
      entries = readManifest(vectors.resolve("manifest.tsv"));
    } catch (IOException | IllegalArgumentException e) {
      System.err.println("interop: cannot read " + vectors.resolve("manifest.tsv") + ": " + e.getMessage());
      System.exit(2);
      return;
    }
    int checked = 0;
    int failed = 0;
    for (Entry e : entries) {
      for (String framing : List.of("single", "confluent")) {
        String vector = e.name() + "." + framing;
        checked++;
        try {
          String detail = check(schemasDir, vectors, e, framing);
          System.out.printf("ok    %-35s %s%n", vector, detail);
        } catch (Mismatch | IOException | RuntimeException ex) {
          failed++;
          System.out.printf("FAIL  %-35s %s%n", vector, describe(ex));
        }
      }
    }
    String avroVersion = Schema.class.getPackage().getImplementationVersion();
    System.out.printf(
        "interop: Apache Avro %s for Java (Java %s) read %d of %d vectors correctly%n",
        avroVersion == null ? "(unknown version)" : avroVersion,
        System.getProperty("java.version"),
        checked - failed,
        checked);
    System.exit(failed == 0 ? 0 : 1);
  }

  private static String describe(Exception ex) {
    if (ex instanceof Mismatch) {
      return ex.getMessage();
    }
    return ex.getClass().getSimpleName() + ": " + ex.getMessage();
  }

  private static List<Entry> readManifest(Path file) throws IOException {
    List<Entry> entries = new ArrayList<>();
    for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
      if (line.isBlank() || line.startsWith("#")) {
        continue;
      }
      String[] cols = line.split("\t");
      if (cols.length != 4) {
        throw new IllegalArgumentException("want 4 tab-separated columns, got: " + line);
      }
      entries.add(new Entry(cols[0], cols[1], cols[2], Integer.parseInt(cols[3])));
    }
    if (entries.isEmpty()) {
      throw new IllegalArgumentException("no vectors listed");
    }
    return entries;
  }

  private static String check(Path schemasDir, Path vectors, Entry e, String framing)
      throws Mismatch, IOException {
    Schema schema = new Schema.Parser().parse(schemasDir.resolve(e.avsc()).toFile());
    if (!schema.getFullName().equals(e.fullName())) {
      throw new Mismatch(e.avsc() + " defines " + schema.getFullName() + ", the manifest says " + e.fullName());
    }
    GenericRecord expected = readExpected(schema, vectors.resolve(e.name() + ".json"));
    List<Probe> probes = readProbes(vectors.resolve(e.name() + ".probes.json"));
    byte[] b = Files.readAllBytes(vectors.resolve(e.name() + "." + framing + ".bin"));

    GenericRecord decoded;
    byte[] body;
    String framingDetail;
    if (framing.equals("single")) {
      if (b.length < 10 || b[0] != (byte) 0xC3 || b[1] != (byte) 0x01) {
        throw new Mismatch("no single-object marker C3 01: starts " + hex(b, 0, Math.min(b.length, 2)));
      }
      long want = SchemaNormalization.parsingFingerprint64(schema);
      long got = ByteBuffer.wrap(b, 2, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
      if (want != got) {
        throw new Mismatch(String.format(
            "fingerprint %016x in the header, Java computes %016x for %s", got, want, e.avsc()));
      }
      // The decoder Java applications use for single-object data: it checks the marker and
      // resolves the fingerprint against the schemas it knows.
      decoded = new BinaryMessageDecoder<GenericRecord>(GenericData.get(), schema).decode(b);
      body = Arrays.copyOfRange(b, 10, b.length);
      framingDetail = String.format("fingerprint %016x", want);
    } else {
      if (b.length < 5 || b[0] != 0) {
        throw new Mismatch("no Confluent magic byte 0: starts " + hex(b, 0, Math.min(b.length, 1)));
      }
      int id = ByteBuffer.wrap(b, 1, 4).getInt();
      if (id != e.schemaId()) {
        throw new Mismatch("schema id " + id + " in the header, the manifest says " + e.schemaId());
      }
      BinaryDecoder d = DecoderFactory.get().binaryDecoder(b, 5, b.length - 5, null);
      decoded = new GenericDatumReader<GenericRecord>(schema).read(null, d);
      if (!d.isEnd()) {
        throw new Mismatch("trailing bytes after the record");
      }
      body = Arrays.copyOfRange(b, 5, b.length);
      framingDetail = "schema id " + id;
    }

    if (!GenericData.get().validate(schema, decoded)) {
      throw new Mismatch("decoded record does not validate against " + e.avsc());
    }
    if (!decoded.equals(expected)) {
      throw new Mismatch("decoded record differs from " + e.name() + ".json:\n      decoded:  "
          + decoded + "\n      expected: " + expected);
    }
    // Avro leaves map entry order to the writer; the vectors keep them sorted by key bytes, so
    // the record is re-encoded with its maps sorted the same way.
    byte[] reencoded = encode(schema, (GenericRecord) sortMaps(schema, decoded));
    if (!Arrays.equals(reencoded, body)) {
      throw new Mismatch(String.format(
          "Java re-encodes the record to %d bytes, the vector's body has %d; first difference at body byte %d",
          reencoded.length, body.length, Arrays.mismatch(reencoded, body)));
    }
    for (Probe p : probes) {
      String got = render(schema, decoded, p.path());
      if (got == null ? p.value() != null : !got.equals(p.value())) {
        throw new Mismatch("probe " + p.path() + ": decoded " + quote(got) + ", want " + quote(p.value()));
      }
    }
    return String.format("%-38s %5d bytes, %s, %2d probes, re-encoded identically",
        schema.getFullName(), b.length, framingDetail, probes.size());
  }

  private static GenericRecord readExpected(Schema schema, Path file) throws IOException {
    String json = Files.readString(file, StandardCharsets.UTF_8);
    return new GenericDatumReader<GenericRecord>(schema)
        .read(null, DecoderFactory.get().jsonDecoder(schema, json));
  }

  private static List<Probe> readProbes(Path file) throws IOException {
    JsonNode root = new ObjectMapper().readTree(file.toFile());
    if (!root.isArray()) {
      throw new IOException(file + ": want a JSON array of {path, value}");
    }
    List<Probe> probes = new ArrayList<>();
    for (JsonNode n : root) {
      JsonNode v = n.get("value");
      probes.add(new Probe(n.get("path").asText(), v == null || v.isNull() ? null : v.asText()));
    }
    return probes;
  }

  /** Returns a copy of v in which every map is a TreeMap ordered by the keys' UTF-8 bytes. */
  private static Object sortMaps(Schema s, Object v) {
    if (v == null) {
      return null;
    }
    switch (s.getType()) {
      case UNION:
        return sortMaps(s.getTypes().get(GenericData.get().resolveUnion(s, v)), v);
      case RECORD:
        GenericRecord in = (GenericRecord) v;
        GenericData.Record out = new GenericData.Record(s);
        for (Schema.Field f : s.getFields()) {
          out.put(f.pos(), sortMaps(f.schema(), in.get(f.pos())));
        }
        return out;
      case ARRAY:
        List<Object> items = new ArrayList<>();
        for (Object item : (Collection<?>) v) {
          items.add(sortMaps(s.getElementType(), item));
        }
        return items;
      case MAP:
        // Utf8 compares by bytes, which is the order the Go side sorts in.
        Map<Utf8, Object> sorted = new TreeMap<>();
        for (Map.Entry<?, ?> en : ((Map<?, ?>) v).entrySet()) {
          sorted.put(new Utf8(en.getKey().toString()), sortMaps(s.getValueType(), en.getValue()));
        }
        return sorted;
      default:
        return v;
    }
  }

  private static byte[] encode(Schema schema, GenericRecord record) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    BinaryEncoder enc = EncoderFactory.get().binaryEncoder(out, null);
    new GenericDatumWriter<GenericRecord>(schema).write(record, enc);
    enc.flush();
    return out.toByteArray();
  }

  /**
   * Follows path (field names separated by dots, "[i]" for an array element, a map key after a
   * map) through the record and renders the scalar found there; null for a null value.
   */
  private static String render(Schema schema, Object value, String path) throws Mismatch {
    Schema s = schema;
    Object v = value;
    for (String seg : path.split("\\.")) {
      String name = seg;
      Integer index = null;
      Matcher m = INDEXED.matcher(seg);
      if (m.matches()) {
        name = m.group(1);
        index = Integer.parseInt(m.group(2));
      }
      if (v == null) {
        throw new Mismatch("probe " + path + ": reaches null before " + seg);
      }
      s = branch(s, v, path);
      if (s.getType() == Schema.Type.RECORD) {
        if (s.getField(name) == null) {
          throw new Mismatch("probe " + path + ": " + s.getFullName() + " has no field " + name);
        }
        v = ((GenericRecord) v).get(name);
        s = s.getField(name).schema();
      } else if (s.getType() == Schema.Type.MAP) {
        Object found = null;
        boolean present = false;
        for (Map.Entry<?, ?> en : ((Map<?, ?>) v).entrySet()) {
          if (en.getKey().toString().equals(name)) {
            found = en.getValue();
            present = true;
          }
        }
        if (!present) {
          throw new Mismatch("probe " + path + ": map has no key " + name);
        }
        v = found;
        s = s.getValueType();
      } else {
        throw new Mismatch("probe " + path + ": cannot select " + name + " in a " + s.getType());
      }
      if (index != null) {
        if (v == null) {
          throw new Mismatch("probe " + path + ": " + name + " is null, not an array");
        }
        s = branch(s, v, path);
        if (s.getType() != Schema.Type.ARRAY) {
          throw new Mismatch("probe " + path + ": " + name + " is a " + s.getType() + ", not an array");
        }
        List<?> list = (List<?>) v;
        if (index >= list.size()) {
          throw new Mismatch("probe " + path + ": " + name + " has only " + list.size() + " elements");
        }
        v = list.get(index);
        s = s.getElementType();
      }
    }
    if (v == null) {
      return null;
    }
    s = branch(s, v, path);
    LogicalType lt = s.getLogicalType();
    if (lt instanceof LogicalTypes.TimestampMillis) {
      return MILLIS.format(Instant.ofEpochMilli((Long) v));
    }
    switch (s.getType()) {
      case STRING:
      case LONG:
      case INT:
      case BOOLEAN:
        return v.toString();
      default:
        throw new Mismatch("probe " + path + " ends at a " + s.getType() + "; probes name scalar fields");
    }
  }

  /** Returns the union branch the non-null v was decoded as, or s when s is not a union. */
  private static Schema branch(Schema s, Object v, String path) throws Mismatch {
    if (s.getType() != Schema.Type.UNION) {
      return s;
    }
    try {
      return s.getTypes().get(GenericData.get().resolveUnion(s, v));
    } catch (RuntimeException e) {
      throw new Mismatch("probe " + path + ": value fits no branch of " + s + ": " + e.getMessage());
    }
  }

  private static String hex(byte[] b, int from, int to) {
    StringBuilder sb = new StringBuilder();
    for (int i = from; i < to; i++) {
      sb.append(String.format("%02X", b[i]));
    }
    return sb.length() == 0 ? "(empty)" : sb.toString();
  }

  private static String quote(String s) {
    return s == null ? "null" : "\"" + s + "\"";
  }
}
