package ingress

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

// selfSigned returns a PEM certificate for 127.0.0.1 with the given serial, and its PEM key.
func selfSigned(t *testing.T, serial int64) (certPEM, keyPEM []byte, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "ingress test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Its own root: the client trusts exactly this certificate.
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), cert
}

// writePair writes the pair and stamps both files with mod, so a rewrite within the file
// system's timestamp granularity is still seen as a change.
func writePair(t *testing.T, certFile, keyFile string, certPEM, keyPEM []byte, mod time.Time) {
	t.Helper()
	for _, f := range []struct {
		path string
		data []byte
	}{{certFile, certPEM}, {keyFile, keyPEM}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f.path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTLSListenerReloadsCertificate serves the ingress over HTTPS from ingress.tls files, rotates
// the certificate on disk and checks the next connection gets the new one; a broken rotation
// keeps the old one in service, and TLS below 1.2 is refused.
func TestTLSListenerReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certA, keyA, a := selfSigned(t, 1001)
	writePair(t, certFile, keyFile, certA, keyA, time.Now().Add(-time.Hour))

	h := newHarness(t, configure(func(c *Config, _ *webhook.Config) {
		c.TLS = TLSConfig{CertFile: certFile, KeyFile: keyFile}
	}))
	in := startIngress(t, h)
	if !strings.HasPrefix(in.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL() = %q, want https", in.URL())
	}

	certB, keyB, b := selfSigned(t, 2002)
	roots := x509.NewCertPool()
	roots.AddCert(a)
	roots.AddCert(b)
	// post sends a valid webhook over a fresh connection and returns the server certificate's
	// serial number.
	post := func(eventID string) int64 {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post(in.URL(), "application/jwt",
			bytes.NewBufferString(h.token("RS256", webhooktest.Event("s-tls", eventID))))
		if err != nil {
			t.Fatalf("HTTPS webhook: %v", err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("HTTPS webhook: %d, TLS %+v", resp.StatusCode, resp.TLS)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := post("e-tls-1"); got != 1001 {
		t.Fatalf("served certificate serial %d, want 1001", got)
	}

	// Rotation: a new pair (new key too) lands on disk.
	writePair(t, certFile, keyFile, certB, keyB, time.Now())
	if got := post("e-tls-2"); got != 2002 {
		t.Fatalf("after rotation: serial %d, want 2002", got)
	}

	// A half-written rotation (key of another pair) does not take the listener down.
	_, keyC, _ := selfSigned(t, 3003)
	writePair(t, certFile, keyFile, certB, keyC, time.Now().Add(time.Minute))
	if got := post("e-tls-3"); got != 2002 {
		t.Fatalf("after a broken rotation: serial %d, want the previous 2002", got)
	}

	// TLS 1.1 is refused.
	conn, err := tls.Dial("tcp", in.Addr(), &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	// Plain HTTP on the TLS port gets no webhook through.
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := plain.Post("http://"+in.Addr()+h.handler.cfg.Path, "application/jwt", strings.NewReader("x"))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP accepted on the TLS listener")
		}
	}
}

func TestTLSStartupErrorsNameTheKeys(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	_, err := newCertReloader(TLSConfig{CertFile: filepath.Join(dir, "missing.crt"), KeyFile: filepath.Join(dir, "missing.key")}, log)
	if err == nil || !strings.Contains(err.Error(), "ingress.tls.cert_file") {
		t.Fatalf("missing files: %v, want an error naming ingress.tls.cert_file", err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certA, _, _ := selfSigned(t, 1)
	_, keyB, _ := selfSigned(t, 2)
	writePair(t, certFile, keyFile, certA, keyB, time.Now())
	_, err = newCertReloader(TLSConfig{CertFile: certFile, KeyFile: keyFile}, log)
	if err == nil || !strings.Contains(err.Error(), "ingress.tls.key_file") {
		t.Fatalf("mismatched pair: %v, want an error naming the keys", err)
	}
}
