package io.idnow.connector.interop;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.crypto.tink.Aead;
import com.google.crypto.tink.InsecureSecretKeyAccess;
import com.google.crypto.tink.KeysetHandle;
import com.google.crypto.tink.RegistryConfiguration;
import com.google.crypto.tink.TinkJsonProtoKeysetFormat;
import com.google.crypto.tink.TinkProtoKeysetFormat;
import com.google.crypto.tink.StreamingAead;
import com.google.crypto.tink.aead.AeadConfig;
import com.google.crypto.tink.streamingaead.StreamingAeadConfig;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;

/**
 * Decrypts the connector's encrypted EnrichedSessions (golden vectors written by
 * internal/privacy/interop_test.go) with Tink for Java, the way a Java consumer would: the
 * key-encryption keyset unwraps the data keyset of the keys topic
 * (TinkProtoKeysetFormat.parseEncryptedKeyset), and each field of privacy.encrypted is decrypted
 * with associated data topic NUL sessionId NUL path. The tampered and moved cases must fail
 * authentication on their failPath and decrypt everything else. Then the encrypted archive
 * objects of objects.json (what the archiver writes under privacy.mode encrypt) are decrypted with
 * Tink's StreamingAead: the object's keyset, in its header, is unwrapped with the data key the
 * header names, both with associated data "idnow.archive.v1" NUL sessionId NUL vaultEntryId; the
 * plaintext's SHA-256 must match, the tampered and moved objects must fail.
 *
 * <p>Usage: {@code PrivacyCheck <repository root>}. Exits 1 if any case misbehaves, 2 on
 * unreadable input.
 */
public final class PrivacyCheck {
  private PrivacyCheck() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 1) {
      System.err.println("usage: PrivacyCheck <repository root>");
      System.exit(2);
    }
    Path root = Path.of(args[0]);
    Path vectors = root.resolve("internal/privacy/testdata/interop");
    JsonNode manifest = new ObjectMapper().readTree(vectors.resolve("manifest.json").toFile());
    AeadConfig.register();
    Aead kek =
        TinkJsonProtoKeysetFormat.parseKeyset(
                Files.readString(vectors.resolve(manifest.get("kek").asText())), InsecureSecretKeyAccess.get())
            .getPrimitive(RegistryConfiguration.get(), Aead.class);
    Map<String, Aead> keys = new HashMap<>();
    var names = manifest.get("keys").fieldNames();
    while (names.hasNext()) {
      String name = names.next();
      byte[] wrapped = Base64.getDecoder().decode(manifest.get("keys").get(name).asText());
      KeysetHandle h = TinkProtoKeysetFormat.parseEncryptedKeyset(wrapped, kek, new byte[0]);
      keys.put(name, h.getPrimitive(RegistryConfiguration.get(), Aead.class));
    }
    Schema schema = new Schema.Parser().parse(root.resolve(manifest.get("schema").asText()).toFile());
    String topic = manifest.get("topic").asText();
    int failures = 0;
    for (JsonNode c : manifest.get("cases")) {
      failures += check(c, vectors, schema, topic, keys);
    }
    failures += checkObjects(vectors, kek);
    System.exit(failures == 0 ? 0 : 1);
  }

  private static int checkObjects(Path vectors, Aead kek) throws Exception {
    StreamingAeadConfig.register();
    JsonNode manifest = new ObjectMapper().readTree(vectors.resolve("objects.json").toFile());
    Map<String, Aead> dataKeys = new HashMap<>();
    var names = manifest.get("keys").fieldNames();
    while (names.hasNext()) {
      String name = names.next();
      byte[] wrapped = Base64.getDecoder().decode(manifest.get("keys").get(name).asText());
      dataKeys.put(
          name,
          TinkProtoKeysetFormat.parseEncryptedKeyset(wrapped, kek, new byte[0])
              .getPrimitive(RegistryConfiguration.get(), Aead.class));
    }
    int failures = 0;
    for (JsonNode c : manifest.get("objects")) {
      String name = c.get("name").asText();
      byte[] raw = Files.readAllBytes(vectors.resolve(c.get("file").asText()));
      if (c.has("flipByte")) {
        raw[c.get("flipByte").asInt()] ^= 1;
      }
      boolean mustFail = c.has("fail") && c.get("fail").asBoolean();
      String digest;
      try {
        digest = openObject(raw, dataKeys, c.get("sessionId").asText(), c.get("vaultEntryId").asText());
      } catch (GeneralSecurityException | IOException e) {
        if (mustFail) {
          System.out.printf("ok    %-15s refused as it must be (%s)%n", name, e.getClass().getSimpleName());
        } else {
          System.out.println("FAIL  " + name + ": " + e);
          failures++;
        }
        continue;
      }
      if (mustFail) {
        System.out.println("FAIL  " + name + ": decrypted, want an authentication failure");
        failures++;
      } else if (!digest.equals(c.get("plaintextSha256").asText())) {
        System.out.println("FAIL  " + name + ": plaintext sha256 " + digest + ", want " + c.get("plaintextSha256").asText());
        failures++;
      } else {
        System.out.printf(
            "ok    %-15s %d bytes decrypted with Tink for Java StreamingAead, sha256 matches%n",
            name, c.get("plaintextSize").asLong());
      }
    }
    return failures;
  }

  /**
   * Decrypts one archive object ("IDNWARC1", uint32 big-endian header length, JSON header, Tink
   * streaming AEAD ciphertext) and returns the plaintext's SHA-256 (hex). The associated data
   * comes from what the reader expects (the archive manifest's session and file), not from the
   * header, so an object moved to another session or file fails.
   */
  static String openObject(byte[] raw, Map<String, Aead> dataKeys, String sessionId, String vaultEntryId)
      throws GeneralSecurityException, IOException {
    if (raw.length < 12 || !new String(raw, 0, 8, StandardCharsets.US_ASCII).equals("IDNWARC1")) {
      throw new IOException("not an encrypted archive object");
    }
    int n = ByteBuffer.wrap(raw, 8, 4).getInt();
    JsonNode header = new ObjectMapper().readTree(new String(raw, 12, n, StandardCharsets.UTF_8));
    byte[] ad = ("idnow.archive.v1\0" + sessionId + "\0" + vaultEntryId).getBytes(StandardCharsets.UTF_8);
    Aead dek = dataKeys.get(header.get("keyName").asText());
    if (dek == null) {
      throw new GeneralSecurityException("unknown data key (erased?)");
    }
    byte[] wrappedKeyset = Base64.getDecoder().decode(header.get("keyset").asText());
    StreamingAead saead =
        TinkProtoKeysetFormat.parseEncryptedKeyset(wrappedKeyset, dek, ad)
            .getPrimitive(RegistryConfiguration.get(), StreamingAead.class);
    MessageDigest sha = MessageDigest.getInstance("SHA-256");
    try (InputStream in =
        saead.newDecryptingStream(new ByteArrayInputStream(raw, 12 + n, raw.length - 12 - n), ad)) {
      byte[] buf = new byte[1 << 16];
      for (int r; (r = in.read(buf)) > 0; ) {
        sha.update(buf, 0, r);
      }
    }
    StringBuilder hex = new StringBuilder();
    for (byte b : sha.digest()) {
      hex.append(String.format("%02x", b));
    }
    return hex.toString();
  }

  private static int check(JsonNode c, Path vectors, Schema schema, String topic, Map<String, Aead> keys)
      throws IOException {
    String name = c.get("name").asText();
    byte[] raw = Files.readAllBytes(vectors.resolve(c.get("record").asText()));
    if (raw.length < 10 || (raw[0] & 0xff) != 0xC3 || raw[1] != 0x01) {
      System.out.println("FAIL  " + name + ": not Avro single-object encoding");
      return 1;
    }
    GenericRecord rec =
        new GenericDatumReader<GenericRecord>(schema)
            .read(null, DecoderFactory.get().binaryDecoder(raw, 10, raw.length - 10, null));
    GenericRecord env = (GenericRecord) rec.get("privacy");
    String sessionId = ((GenericRecord) rec.get("session")).get("sessionId").toString();
    Aead key = keys.get(env.get("keyName").toString());
    Map<String, ByteBuffer> encrypted = new TreeMap<>();
    for (Map.Entry<?, ?> e : ((Map<?, ?>) env.get("encrypted")).entrySet()) {
      encrypted.put(e.getKey().toString(), (ByteBuffer) e.getValue());
    }
    String failPath = c.has("failPath") ? c.get("failPath").asText() : "";
    List<String> failed = new ArrayList<>();
    int ok = 0;
    int failures = 0;
    for (Map.Entry<String, ByteBuffer> e : encrypted.entrySet()) {
      String path = e.getKey();
      ByteBuffer b = e.getValue();
      byte[] ct = new byte[b.remaining()];
      b.duplicate().get(ct);
      byte[] ad = (topic + "\0" + sessionId + "\0" + path).getBytes(StandardCharsets.UTF_8);
      String plain;
      try {
        plain = new String(key.decrypt(ct, ad), StandardCharsets.UTF_8);
      } catch (GeneralSecurityException ex) {
        failed.add(path);
        continue;
      }
      String want = c.get("plaintext").has(path) ? c.get("plaintext").get(path).asText() : null;
      if (!plain.equals(want)) {
        System.out.println("FAIL  " + name + ": " + path + " decrypted to " + plain + ", want " + want);
        failures++;
      }
      ok++;
    }
    List<String> wantFailed = failPath.isEmpty() ? List.of() : List.of(failPath);
    if (!failed.equals(wantFailed)) {
      System.out.println("FAIL  " + name + ": authentication failed for " + failed + ", want exactly " + wantFailed);
      return failures + 1;
    }
    System.out.printf(
        "ok    %-10s %d fields decrypted with Tink for Java%s%n",
        name, ok, failPath.isEmpty() ? "" : ", " + failPath + " refused as it must be");
    return failures;
  }
}
