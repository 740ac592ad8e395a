// Package privacy protects the personal data the connector writes: the field classification
// read from the schemas ("idnow.pii"), envelope encryption of personal fields with Google Tink
// (AES-256-GCM data keys per subject or session, wrapped by a key-encryption key from a key
// manager and kept in the compacted keys topic), crypto-shredding erasure, keyed HMAC pseudonyms
// and the decrypting reader. docs/privacy.md has the design, the threat model and the formats.
package privacy
