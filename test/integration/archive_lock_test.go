//go:build integration

package integration

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gocloud.dev/blob"
	"gocloud.dev/blob/s3blob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/blobstore"
)

// TestArchiveObjectLock writes through the archiver's Object Lock hook (archive.object_lock)
// into a SeaweedFS bucket created with Object Lock enabled, a small object (one PUT) and one of
// 20 MiB (a multipart upload), and reads the retention S3 reports for each.
func TestArchiveObjectLock(t *testing.T) {
	s3Bucket(t) // skips without S3_ENDPOINT
	tr := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(tr.CloseIdleConnections)
	cl := s3.New(s3.Options{
		BaseEndpoint: aws.String(os.Getenv("S3_ENDPOINT")), Region: "us-east-1", UsePathStyle: true,
		Credentials: aws.AnonymousCredentials{}, HTTPClient: tr,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	// One bucket for every run (each SeaweedFS bucket takes volumes of its own); keys are unique.
	name := bucketName(os.Getenv("S3_BUCKET")) + "-lock"
	ctx := t.Context()
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name, ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		var exists *types.BucketAlreadyExists
		if !errors.As(err, &owned) && !errors.As(err, &exists) {
			t.Fatalf("create bucket %s with Object Lock: %v", name, err)
		}
	}
	run := uniqueName(t, "lock")
	b, err := s3blob.OpenBucket(ctx, cl, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	lock := blobstore.ObjectLock{Mode: blobstore.LockGovernance, RetainFor: 48 * time.Hour}
	now := time.Now()
	// 20 MiB is above the transfer manager's 16 MiB multipart threshold.
	for file, size := range map[string]int{"small.jpg": 10 << 10, "large.mp4": 20 << 20} {
		key := run + "/" + file
		err := b.Upload(ctx, key, bytes.NewReader(make([]byte, size)), &blob.WriterOptions{
			ContentType: "application/octet-stream", BufferSize: 5 << 20, BeforeWrite: lock.BeforeWrite(now),
		})
		if err != nil {
			t.Fatalf("upload %s: %v", key, err)
		}
		out, err := cl.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: &name, Key: aws.String(key)})
		if err != nil {
			t.Fatalf("retention of %s: %v", key, err)
		}
		r := out.Retention
		if r == nil || r.Mode != types.ObjectLockRetentionModeGovernance || r.RetainUntilDate == nil ||
			r.RetainUntilDate.Sub(now.Add(48*time.Hour)).Abs() > 2*time.Second {
			t.Fatalf("retention of %s = %+v, want GOVERNANCE until %s", key, r, now.Add(48*time.Hour).UTC())
		}
		t.Logf("%s (%d bytes): %s until %s", key, size, r.Mode, r.RetainUntilDate.UTC())
	}
}
