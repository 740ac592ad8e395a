package blobstore

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
)

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url, wantErr string
	}{
		{"s3://bucket?region=eu-central-1", ""},
		{"gs://bucket", ""},
		{"azblob://container", ""},
		{"file:///var/lib/archive", ""},
		{"file://relative/path", "absolute path"},
		{"s3://", "names no bucket"},
		{"http://example.com/bucket", "use one of s3://"},
		{"::", "does not parse"},
	}
	for _, tt := range tests {
		err := CheckURL(tt.url)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("CheckURL(%q) = %v, want nil", tt.url, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("CheckURL(%q) = %v, want an error containing %q", tt.url, err, tt.wantErr)
		}
	}
}

func TestRedact(t *testing.T) {
	got := Redact("s3://bucket/prefix?endpoint=https://user:pw@minio&sig=secret")
	if got != "s3://bucket/prefix" {
		t.Fatalf("Redact = %q", got)
	}
}

// TestObjectLockBeforeWrite: with a mode set, the S3 upload input gets the Object Lock mode and
// a retain-until date of write time + retain_for; other drivers (asFunc false) are left alone.
func TestObjectLockBeforeWrite(t *testing.T) {
	if (ObjectLock{}).BeforeWrite(time.Now()) != nil {
		t.Fatal("no lock configured, but a BeforeWrite hook returned")
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	hook := ObjectLock{Mode: LockCompliance, RetainFor: 24 * time.Hour}.BeforeWrite(now)
	in := &transfermanager.UploadObjectInput{}
	err := hook(func(v any) bool {
		p, ok := v.(**transfermanager.UploadObjectInput)
		if ok {
			*p = in
		}
		return ok
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(in.ObjectLockMode) != LockCompliance || in.ObjectLockRetainUntilDate == nil || !in.ObjectLockRetainUntilDate.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("upload input: mode %q, until %v", in.ObjectLockMode, in.ObjectLockRetainUntilDate)
	}
	if err := hook(func(any) bool { return false }); err != nil {
		t.Fatalf("non-S3 driver: %v", err)
	}
}

func TestObjectLockValidate(t *testing.T) {
	if err := (ObjectLock{Mode: "FOREVER"}).Validate("archive.object_lock"); err == nil || !strings.Contains(err.Error(), "GOVERNANCE, COMPLIANCE") || !strings.Contains(err.Error(), "retain_for") {
		t.Fatalf("Validate = %v", err)
	}
	if err := (ObjectLock{Mode: LockGovernance, RetainFor: time.Hour}).Validate("archive.object_lock"); err != nil {
		t.Fatal(err)
	}
}
