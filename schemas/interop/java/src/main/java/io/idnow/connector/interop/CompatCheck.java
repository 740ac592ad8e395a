package io.idnow.connector.interop;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.apache.avro.Schema;
import org.apache.avro.SchemaCompatibility;
import org.apache.avro.SchemaCompatibility.Incompatibility;
import org.apache.avro.SchemaCompatibility.SchemaPairCompatibility;

/**
 * Proves with Apache Avro for Java's {@link SchemaCompatibility} that each current schema
 * ({@code <schemas dir>/<file>.avsc}) is FULL-compatible with every released version kept in
 * {@code <schemas dir>/history/<file>/v<N>.avsc}: the current schema reads records written with
 * every version (backward) and every version reads records written with the current schema
 * (forward), so producers and consumers can upgrade in any order. The Go tests (schemas.CheckFull)
 * check the same with the Go library; this is the reference implementation's verdict.
 *
 * <p>Usage: {@code CompatCheck <schemas dir>}. Prints one line per schema and version, naming the
 * offending field on failure, and exits 1 if any pair is incompatible, 2 on bad input.
 */
public final class CompatCheck {
  private static final Pattern VERSION = Pattern.compile("v([1-9][0-9]*)\\.avsc");

  private CompatCheck() {}

  /**
   * Checks every schema that has a history.
   *
   * @param args the schemas directory
   */
  public static void main(String[] args) {
    if (args.length != 1) {
      System.err.println("usage: CompatCheck <schemas dir>");
      System.exit(2);
    }
    Path schemasDir = Path.of(args[0]);
    int checked = 0;
    int failed = 0;
    try {
      List<Path> currents = list(schemasDir, "*.avsc");
      if (currents.isEmpty()) {
        throw new IOException("no .avsc files in " + schemasDir);
      }
      for (Path current : currents) {
        String file = current.getFileName().toString().replaceFirst("\\.avsc$", "");
        Path historyDir = schemasDir.resolve("history").resolve(file);
        List<Path> versions = Files.isDirectory(historyDir) ? list(historyDir, "v*.avsc") : List.of();
        if (versions.isEmpty()) {
          failed++;
          System.out.printf("FAIL  %-20s no released version in %s: copy %s.avsc there as v1.avsc%n",
              file, historyDir, file);
          continue;
        }
        Schema cur = new Schema.Parser().parse(current.toFile());
        for (Path v : versions) {
          Matcher m = VERSION.matcher(v.getFileName().toString());
          if (!m.matches()) {
            throw new IOException(v + ": history files are named v<N>.avsc");
          }
          String name = file + " v" + m.group(1);
          // A fresh parser per file: both define the same record names.
          Schema old = new Schema.Parser().parse(v.toFile());
          checked++;
          List<String> problems = new ArrayList<>();
          problems.addAll(incompatibilities("backward (current reads v" + m.group(1) + ")", cur, old));
          problems.addAll(incompatibilities("forward (v" + m.group(1) + " reads current)", old, cur));
          if (problems.isEmpty()) {
            System.out.printf("ok    %-20s FULL%n", name);
          } else {
            failed++;
            System.out.printf("FAIL  %-20s not FULL-compatible:%n", name);
            for (String p : problems) {
              System.out.printf("        %s%n", p);
            }
          }
        }
      }
    } catch (IOException | RuntimeException e) {
      System.err.println("compat: " + e.getClass().getSimpleName() + ": " + e.getMessage());
      System.exit(2);
      return;
    }
    System.out.printf("compat: %d of %d released versions FULL-compatible with the current schemas%n",
        checked - failed, checked);
    System.exit(failed == 0 ? 0 : 1);
  }

  /** The incompatibilities of reading writer-written data with reader, one line each. */
  private static List<String> incompatibilities(String direction, Schema reader, Schema writer) {
    SchemaPairCompatibility c = SchemaCompatibility.checkReaderWriterCompatibility(reader, writer);
    List<String> out = new ArrayList<>();
    for (Incompatibility i : c.getResult().getIncompatibilities()) {
      out.add(String.format("%s: %s at %s: %s", direction, i.getType(), i.getLocation(), i.getMessage()));
    }
    return out;
  }

  private static List<Path> list(Path dir, String glob) throws IOException {
    List<Path> out = new ArrayList<>();
    try (Stream<Path> s = Files.list(dir)) {
      s.filter(p -> dir.getFileSystem().getPathMatcher("glob:" + glob).matches(p.getFileName()))
          .filter(Files::isRegularFile)
          .sorted()
          .forEach(out::add);
    }
    return out;
  }
}
