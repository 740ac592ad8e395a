package privacy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
	"gocloud.dev/secrets"

	// The key managers privacy.kek_url may name. Each driver reads its credentials the way
	// its cloud's SDK does (environment, workload identity, VAULT_TOKEN), never from the
	// connector's configuration.
	_ "gocloud.dev/secrets/awskms"
	_ "gocloud.dev/secrets/azurekeyvault"
	_ "gocloud.dev/secrets/gcpkms"
	_ "gocloud.dev/secrets/hashivault"
	_ "gocloud.dev/secrets/localsecrets"
)

// KEK is the key-encryption key: a Tink AEAD that wraps data keysets and the pepper, and a
// description of where it lives for logs and the keys topic's headers (never key material).
type KEK struct {
	tink.AEAD
	// Source is "kms:<scheme>" for a key manager URL, or "keyset-file:<base name>".
	Source string
	close  func() error
}

// Close releases the key manager connection, if any.
func (k *KEK) Close() error {
	if k.close == nil {
		return nil
	}
	return k.close()
}

// OpenKEK opens the key-encryption key privacy.kek_url or privacy.kek_keyset_file names.
func OpenKEK(ctx context.Context, c Config) (*KEK, error) {
	switch {
	case c.KEKURL != "":
		u, err := url.Parse(c.KEKURL)
		if err != nil || u.Scheme == "" {
			return nil, fmt.Errorf("privacy.kek_url is not a URL such as awskms:///alias/idnow-kek: %q", c.KEKURL)
		}
		k, err := secrets.OpenKeeper(ctx, c.KEKURL)
		if err != nil {
			return nil, fmt.Errorf("open the key-encryption key privacy.kek_url (%s://...): %w", u.Scheme, err)
		}
		timeout := c.KMSTimeout
		if timeout <= 0 {
			timeout = DefaultConfig().KMSTimeout
		}
		return &KEK{AEAD: keeperAEAD{k: k, timeout: timeout}, Source: "kms:" + u.Scheme, close: k.Close}, nil
	case c.KEKKeysetFile != "":
		h, err := readCleartextKeyset(c.KEKKeysetFile)
		if err != nil {
			return nil, err
		}
		a, err := aead.New(h)
		if err != nil {
			return nil, fmt.Errorf("privacy.kek_keyset_file %s is not an AEAD keyset (make one with `idnow-connector privacy init`): %w", c.KEKKeysetFile, err)
		}
		return &KEK{AEAD: a, Source: "keyset-file:" + filepath.Base(c.KEKKeysetFile)}, nil
	}
	return nil, errors.New("no key-encryption key configured: set privacy.kek_url or privacy.kek_keyset_file")
}

// keeperAEAD adapts a gocloud.dev/secrets Keeper to tink.AEAD, so keyset.Handle.Write wraps a
// keyset with a KMS in Tink's standard encrypted-keyset format; Java and Python unwrap it with
// their own Tink KMS client for the same key. Key managers reached through gocloud take no
// associated data, so only empty associated data is accepted (what keyset.Handle.Write passes).
type keeperAEAD struct {
	k       *secrets.Keeper
	timeout time.Duration
}

func (a keeperAEAD) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	if len(associatedData) > 0 {
		return nil, errors.New("the key manager behind privacy.kek_url takes no associated data")
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	ct, err := a.k.Encrypt(ctx, plaintext)
	if err != nil {
		return nil, fmt.Errorf("key manager encrypt (privacy.kek_url): %w", err)
	}
	return ct, nil
}

func (a keeperAEAD) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	if len(associatedData) > 0 {
		return nil, errors.New("the key manager behind privacy.kek_url takes no associated data")
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	pt, err := a.k.Decrypt(ctx, ciphertext)
	if err != nil {
		return nil, fmt.Errorf("key manager decrypt (privacy.kek_url): %w", err)
	}
	return pt, nil
}

// readCleartextKeyset reads a cleartext JSON Tink keyset, the development KEK.
func readCleartextKeyset(path string) (*keyset.Handle, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read privacy.kek_keyset_file: %w (create it with `idnow-connector privacy init`)", err)
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(b)))
	if err != nil {
		return nil, fmt.Errorf("privacy.kek_keyset_file %s is not a Tink JSON keyset: %w", path, err)
	}
	return h, nil
}

// NewKEKKeysetFile writes a new cleartext AES-256-GCM Tink keyset to path (mode 0600), for
// development. It refuses to overwrite an existing file: data keys wrapped by it would become
// unreadable.
func NewKEKKeysetFile(path string) error {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return fmt.Errorf("new KEK keyset: %w", err)
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		return fmt.Errorf("serialize KEK keyset: %w", err)
	}
	return writeNew(path, buf.Bytes())
}

// RotateKEKKeysetFile adds a new AES-256-GCM key to the development KEK keyset at path and makes
// it primary. Older keys stay in the keyset, so data keys they wrapped still unwrap: nothing is
// rewritten. (With a KMS, rotation is the KMS's own: a new key version is used for new wraps,
// older versions keep decrypting.)
func RotateKEKKeysetFile(path string) (primaryID uint32, err error) {
	h, err := readCleartextKeyset(path)
	if err != nil {
		return 0, err
	}
	m := keyset.NewManagerFromHandle(h)
	id, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return 0, fmt.Errorf("add a key to the KEK keyset: %w", err)
	}
	if err := m.SetPrimary(id); err != nil {
		return 0, fmt.Errorf("make the new KEK key primary: %w", err)
	}
	nh, err := m.Handle()
	if err != nil {
		return 0, fmt.Errorf("KEK keyset: %w", err)
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(nh, keyset.NewJSONWriter(&buf)); err != nil {
		return 0, fmt.Errorf("serialize KEK keyset: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return 0, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("replace %s: %w", path, err)
	}
	return id, nil
}

// writeNew writes b to a new file at path (0600), creating its folder; an existing file is an
// error.
func writeNew(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create folder of %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
