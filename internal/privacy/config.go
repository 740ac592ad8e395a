package privacy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// Key scopes accepted by privacy.key_scope.
const (
	// ScopeSubject keys a record by its session's subjectId, falling back to the session when the
	// session has none: erasing a subject shreds every session of that person.
	ScopeSubject = "subject"
	// ScopeSession keys every session on its own.
	ScopeSession = "session"
)

// Config is the `privacy.*` config section.
type Config struct {
	// Mode is plain (default: personal fields in clear text), encrypt or drop.
	Mode string `koanf:"mode"`
	// KeyScope is subject (default) or session: what one data key covers.
	KeyScope string `koanf:"key_scope"`
	// KEKURL is a gocloud.dev/secrets URL of the key-encryption key: awskms://, gcpkms://,
	// azurekeyvault://, hashivault:// (production), base64key:// (tests). Exclusive with
	// KEKKeysetFile.
	KEKURL string `koanf:"kek_url"`
	// KEKKeysetFile is a cleartext Tink AEAD keyset (JSON) used as the key-encryption key, for
	// development: `run` creates one when encrypt is asked for and neither key is set.
	KEKKeysetFile string `koanf:"kek_keyset_file"`
	// PepperFile holds the HMAC key of pseudonyms and key references: a Tink PRF keyset
	// encrypted with the key-encryption key. Created by `idnow-connector privacy init` (and by
	// `run` for development).
	PepperFile string `koanf:"pepper_file"`
	// Pseudonymize lists the field paths that get an HMAC pseudonym (see PseudonymFields).
	Pseudonymize []string `koanf:"pseudonymize"`
	// KMSTimeout bounds one call to the key manager (wrap or unwrap a data key).
	KMSTimeout time.Duration `koanf:"kms_timeout"`
	// KeyCacheSize bounds the unwrapped data keys kept in memory (least recently used go).
	KeyCacheSize int `koanf:"key_cache_size"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Mode: schemas.PrivacyPlain, KeyScope: ScopeSubject,
		KMSTimeout: 10 * time.Second, KeyCacheSize: 10_000,
	}
}

// Validate reports every problem at once, each naming its key.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Mode {
	case schemas.PrivacyPlain, schemas.PrivacyEncrypt, schemas.PrivacyDrop:
	default:
		add("privacy.mode %q must be plain, encrypt or drop", c.Mode)
	}
	switch c.KeyScope {
	case ScopeSubject, ScopeSession:
	default:
		add("privacy.key_scope %q must be subject or session", c.KeyScope)
	}
	if c.KEKURL != "" && c.KEKKeysetFile != "" {
		add("privacy.kek_url and privacy.kek_keyset_file are both set: keep one (kek_url for a KMS in production, kek_keyset_file for development)")
	}
	if c.NeedsKeys() {
		if c.KEKURL == "" && c.KEKKeysetFile == "" {
			add("privacy.mode %s needs a key-encryption key: set privacy.kek_url (awskms://..., gcpkms://..., azurekeyvault://..., hashivault://...) or, for development, privacy.kek_keyset_file", c.Mode)
		}
		if c.PepperFile == "" {
			add("privacy.mode %s needs privacy.pepper_file (create it once with `idnow-connector privacy init`)", c.Mode)
		}
	}
	for i, p := range c.Pseudonymize {
		if !slices.Contains(PseudonymFields, p) {
			add("privacy.pseudonymize[%d] %q is not a field that can be pseudonymized; use one of %s", i, p, strings.Join(PseudonymFields, ", "))
		}
	}
	if c.KMSTimeout <= 0 {
		add("privacy.kms_timeout must be positive, e.g. 10s")
	}
	if c.KeyCacheSize <= 0 {
		add("privacy.key_cache_size must be positive, e.g. 10000")
	}
	return errors.Join(errs...)
}

// NeedsKeys reports whether the configuration uses the key manager: encrypt mode, or
// pseudonyms (their HMAC key is wrapped by the key-encryption key).
func (c Config) NeedsKeys() bool {
	return c.Mode == schemas.PrivacyEncrypt || len(c.Pseudonymize) > 0
}
