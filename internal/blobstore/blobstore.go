// Package blobstore opens the object stores the archive writes to, through gocloud.dev/blob:
// s3:// (AWS and any S3-compatible store: endpoint=, use_path_style=true, anonymous=true),
// gs://, azblob:// and file://. It also knows the one store-specific write option the archive
// uses, S3 Object Lock retention, and how to name a bucket in records without its credentials.
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob" // azblob://
	"gocloud.dev/blob/fileblob"  // file://
	"gocloud.dev/blob/gcsblob"   // gs://
	"gocloud.dev/blob/s3blob"    // s3://
	"gocloud.dev/gcerrors"
)

// Schemes are the bucket URL schemes Open accepts.
var Schemes = []string{s3blob.Scheme, gcsblob.Scheme, azureblob.Scheme, fileblob.Scheme}

// Open opens the bucket at rawURL. The caller closes it.
func Open(ctx context.Context, rawURL string) (*blob.Bucket, error) {
	if err := CheckURL(rawURL); err != nil {
		return nil, err
	}
	b, err := blob.OpenBucket(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", Redact(rawURL), err)
	}
	return b, nil
}

// CheckURL reports a bucket URL Open would refuse, saying what to write instead.
func CheckURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("bucket URL %q does not parse (%w); write e.g. s3://my-bucket?region=eu-central-1 or file:///var/lib/idnow/archive", Redact(rawURL), err)
	}
	for _, s := range Schemes {
		if u.Scheme == s {
			if u.Scheme == fileblob.Scheme && ((u.Host != "" && u.Host != "localhost") || !strings.HasPrefix(u.Path, "/")) {
				return fmt.Errorf("bucket URL %q: a file:// URL needs an absolute path (file:///var/lib/idnow/archive)", Redact(rawURL))
			}
			if u.Scheme != fileblob.Scheme && u.Host == "" {
				return fmt.Errorf("bucket URL %q names no bucket; write %s://<bucket>", Redact(rawURL), u.Scheme)
			}
			return nil
		}
	}
	return fmt.Errorf("bucket URL %q has scheme %q; use one of s3://, gs://, azblob:// or file://", Redact(rawURL), u.Scheme)
}

// Redact returns the bucket URL's scheme, bucket and path only: query parameters can carry
// endpoints with credentials or SAS tokens.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable URL>"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// Exists reports whether key exists, with its attributes when it does.
func Exists(ctx context.Context, b *blob.Bucket, key string) (*blob.Attributes, bool, error) {
	a, err := b.Attributes(ctx, key)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, false, nil
		}
		return nil, false, err
	}
	return a, true, nil
}

// IsNotFound reports whether err means the object does not exist.
func IsNotFound(err error) bool { return gcerrors.Code(err) == gcerrors.NotFound }

// ObjectLock modes (S3 Object Lock).
const (
	LockGovernance = "GOVERNANCE"
	LockCompliance = "COMPLIANCE"
)

// ObjectLock asks S3 to retain each written object until now+RetainFor (S3 Object Lock; the
// bucket must have been created with Object Lock enabled). Other stores ignore it: GCS and
// Azure set retention per bucket or container policy, not per write.
type ObjectLock struct {
	Mode      string
	RetainFor time.Duration
}

// Enabled reports whether a retention is configured.
func (l ObjectLock) Enabled() bool { return l.Mode != "" }

// BeforeWrite returns a blob.WriterOptions.BeforeWrite that sets the Object Lock headers on an
// S3 upload; nil when no lock is configured. now is the write time.
func (l ObjectLock) BeforeWrite(now time.Time) func(asFunc func(any) bool) error {
	if !l.Enabled() {
		return nil
	}
	return func(asFunc func(any) bool) error {
		var in *transfermanager.UploadObjectInput
		if !asFunc(&in) {
			return nil // not S3: nothing to set
		}
		in.ObjectLockMode = tmtypes.ObjectLockMode(l.Mode)
		until := now.Add(l.RetainFor).UTC()
		in.ObjectLockRetainUntilDate = &until
		return nil
	}
}

// Validate checks the lock's settings; section is the config path (archive.object_lock).
func (l ObjectLock) Validate(section string) error {
	var errs []error
	switch l.Mode {
	case "":
		return nil
	case LockGovernance, LockCompliance:
	default:
		errs = append(errs, fmt.Errorf("%s.mode %q is unknown; set GOVERNANCE, COMPLIANCE or leave it empty for no per-object retention", section, l.Mode))
	}
	if l.RetainFor <= 0 {
		errs = append(errs, fmt.Errorf("%s.retain_for must be a positive duration when %s.mode is set (e.g. 87600h for ten years), got %s", section, section, l.RetainFor))
	}
	return errors.Join(errs...)
}
