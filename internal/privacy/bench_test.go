package privacy

import (
	"strconv"
	"testing"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// BenchmarkProtect measures privacy.mode encrypt per record: with the subject's key cached
// (the steady state), and with a new subject each time (a data key made and wrapped by the
// development KEK per record, the worst case).
func BenchmarkProtect(b *testing.B) {
	for _, tc := range []struct {
		name       string
		newSubject bool
	}{{"known-subject", false}, {"new-subject", true}} {
		b.Run(tc.name, func(b *testing.B) {
			f := newFixture(&testing.T{}, schemas.PrivacyEncrypt)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				subject := "subject-1"
				if tc.newSubject {
					subject = "subject-" + strconv.Itoa(i)
				}
				es := sample("s-"+strconv.Itoa(i), subject)
				if _, err := f.prot.Protect(b.Context(), testTopic, es); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
