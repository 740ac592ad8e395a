package webhook

import (
	"errors"
	"testing"
)

func TestEveryReasonHasAMetricCode(t *testing.T) {
	reasons := []string{
		ReasonMalformed, ReasonMissingKID, ReasonUnknownKey, ReasonKeyMismatch, ReasonBadSignature,
		ReasonAlgorithmNotAllowed, ReasonExpired, ReasonNotYetValid, ReasonWrongIssuer, ReasonWrongAudience,
		ReasonMissingClaim, ReasonClaimNotNumeric, ReasonTooOld, ReasonCritHeader, ReasonDuplicateKey,
		ReasonInvalidUTF8, ReasonMissingData, ReasonInvalidData, ReasonStaticHeader,
		reasonOK, reasonKeysUnavailable, reasonCanceled,
	}
	seen := map[string]string{}
	for _, r := range reasons {
		code, ok := reasonCodes[r]
		if !ok {
			t.Errorf("reason %q has no metric code", r)
			continue
		}
		if other, dup := seen[code]; dup {
			t.Errorf("reasons %q and %q share the code %q", r, other, code)
		}
		seen[code] = r
	}
	if len(reasonCodes) != len(reasons) {
		t.Errorf("reasonCodes has %d entries, this test knows %d reasons", len(reasonCodes), len(reasons))
	}
	if got := reasonCode("something new"); got != codeForUnknownReasonSlug {
		t.Errorf("reasonCode(unknown) = %q, want %q", got, codeForUnknownReasonSlug)
	}
}

func TestVerificationErrorWrapping(t *testing.T) {
	cause := errors.New("cause")
	tests := []struct {
		name    string
		err     *VerificationError
		wantMsg string
	}{
		{name: "with cause", err: invalid(ReasonExpired, cause), wantMsg: "webhook verification failed: token expired: cause"},
		{name: "without cause", err: invalid(ReasonStaticHeader, nil), wantMsg: "webhook verification failed: static header missing or wrong"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err.Error() != tc.wantMsg {
				t.Errorf("Error() = %q, want %q", tc.err.Error(), tc.wantMsg)
			}
			if !errors.Is(tc.err, ErrInvalidToken) {
				t.Error("does not match ErrInvalidToken")
			}
			if tc.err.Err != nil && !errors.Is(tc.err, cause) {
				t.Error("does not match its cause")
			}
			if errors.Is(tc.err, ErrKeysUnavailable) {
				t.Error("matches ErrKeysUnavailable")
			}
		})
	}
	if got := invalid(ReasonUnknownKey, nil).Code(); got != "unknown_kid" {
		t.Errorf("Code() = %q, want unknown_kid", got)
	}
}
