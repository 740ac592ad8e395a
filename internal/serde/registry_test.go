package serde

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// authRecorder is a registry stand-in that records the Authorization header of each request and
// answers every schema lookup with the SessionEvent schema.
type authRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (a *authRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.seen = append(a.seen, r.Header.Get("Authorization"))
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	_, _ = w.Write([]byte(`{"schema":` + quoteJSON(schemas.SessionEventSchema().Text) + `}`))
}

func (a *authRecorder) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[len(a.seen)-1]
}

func quoteJSON(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

func TestRegistryBasicAuth(t *testing.T) {
	rec := &authRecorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	cl, err := NewRegistryClient(Config{URL: srv.URL, Username: "u", Password: "p", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SchemaByID(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(); got != "Basic dTpw" {
		t.Fatalf("Authorization = %q, want Basic dTpw (u:p)", got)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cl, err = NewRegistryClient(Config{URL: srv.URL, Username: "u", PasswordFile: pw, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SchemaByID(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(); got != "Basic dTpw" {
		t.Fatalf("with password_file Authorization = %q, want Basic dTpw (u:p, trailing newline dropped)", got)
	}
}

// TestRegistryBearerTokenFileReread checks a rotated token is sent from the next request on,
// without a restart, and that an empty file at start-up is refused with the key named.
func TestRegistryBearerTokenFileReread(t *testing.T) {
	rec := &authRecorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	tokenPath := filepath.Join(t.TempDir(), "token")
	write := func(tok string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(tokenPath, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(tokenPath, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-time.Hour)
	write("token-one", base)
	cl, err := NewRegistryClient(Config{URL: srv.URL, BearerTokenFile: tokenPath, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SchemaByID(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(); got != "Bearer token-one" {
		t.Fatalf("Authorization = %q, want Bearer token-one", got)
	}
	write("token-two", base.Add(time.Minute))
	if _, err := cl.SchemaByID(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(); got != "Bearer token-two" {
		t.Fatalf("after rotation Authorization = %q, want Bearer token-two", got)
	}

	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRegistryClient(Config{URL: srv.URL, BearerTokenFile: empty, Timeout: time.Second}); err == nil || !strings.Contains(err.Error(), "schema_registry.bearer_token_file") {
		t.Fatalf("empty token file: want an error naming schema_registry.bearer_token_file, got %v", err)
	}
}

// TestRegistryMTLS runs a registry that requires a client certificate: the client with
// schema_registry.tls.{ca_file,cert_file,key_file} gets through, one without a certificate not.
func TestRegistryMTLS(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := newCA(t)
	caPath := writePEM(t, dir, "ca.pem", "CERTIFICATE", caCert.Raw)
	serverTLS := issue(t, caCert, caKey, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	clientTLS := issue(t, caCert, caKey, "connector", x509.ExtKeyUsageClientAuth)
	certPath := writePEM(t, dir, "client.pem", "CERTIFICATE", clientTLS.Certificate[0])
	keyDER, err := x509.MarshalPKCS8PrivateKey(clientTLS.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := writePEM(t, dir, "client.key", "PRIVATE KEY", keyDER)

	rec := &authRecorder{}
	srv := httptest.NewUnstartedServer(rec)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverTLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	ok, err := NewRegistryClient(Config{URL: srv.URL, Timeout: 5 * time.Second, TLS: TLSConfig{CAFile: caPath, CertFile: certPath, KeyFile: keyPath}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ok.SchemaByID(t.Context(), 1); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	noCert, err := NewRegistryClient(Config{URL: srv.URL, Timeout: 5 * time.Second, TLS: TLSConfig{CAFile: caPath}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noCert.SchemaByID(t.Context(), 1); err == nil {
		t.Fatal("without a client certificate the registry should refuse the connection")
	}
}

// TestCodecSetsCompatibility checks the connector sets the subject's level before registering.
func TestCodecSetsCompatibility(t *testing.T) {
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCodec(t.Context(), CodecConfig{Schema: schemas.SessionEventSchema(), Subject: "idnow.sessions-value", Register: true, Compatibility: "FULL"}, cl); err != nil {
		t.Fatal(err)
	}
	res := cl.Compatibility(t.Context(), "idnow.sessions-value")
	if len(res) != 1 || res[0].Err != nil || res[0].Level != sr.CompatFull {
		t.Fatalf("subject compatibility = %+v, want FULL", res)
	}
	if _, err := NewCodec(t.Context(), CodecConfig{Schema: schemas.SessionEventSchema(), Subject: "x-value", Register: true, Compatibility: "SOMETIMES"}, cl); err == nil || !strings.Contains(err.Error(), "schema_registry.compatibility") {
		t.Fatalf("unknown level: want an error naming schema_registry.compatibility, got %v", err)
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.ParseIP(name)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
