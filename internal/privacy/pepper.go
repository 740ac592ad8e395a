package privacy

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Pepper is the deployment's secret HMAC key (a Tink HMAC-SHA-256 PRF keyset, stored encrypted
// by the key-encryption key in privacy.pepper_file). It makes pseudonyms and key references
// stable within a deployment and unlinkable across deployments, and without it nobody can
// compute them from a name or an id.
type Pepper struct {
	set *prf.Set
}

// Domain-separation prefixes: a key reference can never equal a pseudonym of the same value.
const (
	refDomain       = "idnow.keyref.v1\x00"
	pseudonymDomain = "idnow.pseudonym.v1\x00"
)

// LoadPepper reads and unwraps privacy.pepper_file with kek.
func LoadPepper(path string, kek tink.AEAD) (*Pepper, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read privacy.pepper_file: %w (create it once with `idnow-connector privacy init`)", err)
	}
	h, err := keyset.Read(keyset.NewJSONReader(bytes.NewReader(b)), kek)
	if err != nil {
		return nil, fmt.Errorf("unwrap privacy.pepper_file %s with the key-encryption key (was it made with another KEK?): %w", path, err)
	}
	set, err := prf.NewPRFSet(h)
	if err != nil {
		return nil, fmt.Errorf("privacy.pepper_file %s is not a PRF keyset: %w", path, err)
	}
	return &Pepper{set: set}, nil
}

// NewPepperFile writes a new HMAC-SHA-256 PRF keyset, encrypted with kek in Tink's JSON
// encrypted-keyset format, to a new file at path (mode 0600). An existing file is never
// replaced: every pseudonym and key reference made with it would change.
func NewPepperFile(path string, kek tink.AEAD) error {
	h, err := keyset.NewHandle(prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return fmt.Errorf("new pepper keyset: %w", err)
	}
	var buf bytes.Buffer
	if err := h.Write(keyset.NewJSONWriter(&buf), kek); err != nil {
		return fmt.Errorf("wrap the pepper with the key-encryption key: %w", err)
	}
	return writeNew(path, buf.Bytes())
}

func (p *Pepper) mac(domain, s string) []byte {
	out, err := p.set.ComputePrimaryPRF([]byte(domain+s), 32)
	if err != nil {
		// HMAC-SHA-256 with a 32-byte output cannot fail for a loaded HMAC keyset.
		panic(fmt.Sprintf("privacy: HMAC PRF failed: %v", err))
	}
	return out
}

// KeyRef returns the reference of the data keys of a subject (scope ScopeSubject) or a session
// (ScopeSession): "sub-" or "ses-" and 32 hex digits of an HMAC of the id. The keys topic holds
// key references, never subject ids.
func (p *Pepper) KeyRef(scope, id string) string {
	prefix := "ses-"
	if scope == ScopeSubject {
		prefix = "sub-"
	}
	return prefix + hex.EncodeToString(p.mac(refDomain, scope+"\x00"+id)[:16])
}

// Pseudonym returns the HMAC-SHA-256 pseudonym of value for the field at path (a path of
// PseudonymFields, without array indexes), 64 hex digits. The value is trimmed and lower-cased
// first, so "Müller" and " MÜLLER" are one person.
func (p *Pepper) Pseudonym(path, value string) string {
	return hex.EncodeToString(p.mac(pseudonymDomain, path+"\x00"+strings.ToLower(strings.TrimSpace(value))))
}
