package idnow

// Fast paths for the two answers the enricher reads per event (sessions and data blocks).
// encoding/json validates each input and then decodes it by reflection; nested
// UnmarshalJSON methods validate their part again. For the common answer (keys spelled as
// documented, each once) the fast paths read the validated body in place with jsonscan and
// call the same UnmarshalJSON methods on the same value bytes, so the result is what
// encoding/json gives. Anything where encoding/json's rules could give something else (a key
// that matches a field only case-insensitively or needs unescaping, a field given twice,
// a value of another JSON type than the field's) is left to encoding/json, which also words
// the errors; FuzzSessionFastPath and FuzzDataBlocksFastPath compare the two.

import (
	"encoding/json"
	"errors"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/jsonscan"
)

// errSlowPath stops a fast path; the caller falls back to encoding/json.
var errSlowPath = errors.New("idnow: answer left to encoding/json")

// plainFields calls set(i, value) for each member of the object obj named names[i] exactly,
// and ignores members that match no name. It returns false, for the caller to decode obj with
// encoding/json instead, when a key is not plain ASCII without escapes, differs from a name
// only in case (encoding/json matches those too), or names a field twice, or set does.
func plainFields(obj []byte, names []string, set func(i int, value []byte) bool) bool {
	var seen uint64
	err := jsonscan.Members(obj, func(k, v []byte) error {
		key := k[1 : len(k)-1]
		for _, c := range key {
			if c < 0x20 || c >= 0x7f || c == '\\' {
				return errSlowPath
			}
		}
		for i, name := range names {
			if string(key) == name {
				if seen&(1<<i) != 0 || !set(i, v) {
					return errSlowPath
				}
				seen |= 1 << i
				return nil
			}
			if asciiEqualFold(key, name) {
				return errSlowPath
			}
		}
		return nil
	})
	return err == nil
}

// asciiEqualFold is strings.EqualFold for an ASCII key and name, without converting the key.
func asciiEqualFold(key []byte, name string) bool {
	if len(key) != len(name) {
		return false
	}
	for i, c := range key {
		if lower(c) != lower(name[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// rawCopy is what json.RawMessage.UnmarshalJSON stores: a copy, so it does not alias the body.
func rawCopy(v []byte) json.RawMessage { return append(json.RawMessage(nil), v...) }

// text reads a JSON string into a string field; null leaves it as it is (encoding/json's rule);
// other types are encoding/json's to refuse.
func text(v []byte, dst *string) bool {
	switch v[0] {
	case 'n':
		return true
	case '"':
		s, err := jsonscan.Unquote(v)
		*dst = s
		return err == nil
	}
	return false
}

var newerBlockFields = []string{"datablockId", "id", "type", "createdBy", "createdAt", "status", "content"}

// parseNewerFast is parseNewerBlocks for the common answer; ok is false when it is not one.
func parseNewerFast(body []byte) ([]DataBlock, bool) {
	if len(body) == 0 || !jsonscan.Valid(body) {
		return nil, false
	}
	list := body
	if body[0] != '[' {
		list = nil
		if !plainFields(body, []string{"dataBlocks"}, func(_ int, v []byte) bool { list = v; return true }) {
			return nil, false
		}
	}
	if len(list) == 0 || list[0] != '[' {
		return nil, false
	}
	// Room for a completed session's usual blocks: growing block by block showed in profiles.
	out := make([]DataBlock, 0, 8)
	err := jsonscan.Elements(list, func(e []byte) error {
		var nb newerBlock
		if e[0] != '{' || !plainFields(e, newerBlockFields, nb.set) || (nb.Content == nil && nb.CreatedBy == nil) {
			return errSlowPath
		}
		db, err := nb.dataBlock()
		if err != nil {
			return errSlowPath
		}
		out = append(out, db)
		return nil
	})
	return out, err == nil
}

// set stores the member newerBlockFields[i].
func (nb *newerBlock) set(i int, v []byte) bool {
	switch i {
	case 0:
		return nb.DatablockID.UnmarshalJSON(v) == nil
	case 1:
		return nb.ID.UnmarshalJSON(v) == nil
	case 2:
		return nb.Type.UnmarshalJSON(v) == nil
	case 3:
		nb.CreatedBy = v // read by dataBlock while the body is at hand, not kept
	case 4:
		nb.CreatedAt = v // likewise
	case 5:
		return nb.Status.UnmarshalJSON(v) == nil
	case 6:
		nb.Content = rawCopy(v)
	}
	return true
}

// createdBy is a newer block's producing step.
type createdBy struct {
	StepID flexString `json:"stepId"`
	Clock  flexString `json:"clock"`
}

var createdByFields = []string{"stepId", "clock"}

// decodeCreatedBy reads createdBy (valid JSON, cut from the decoded answer).
func decodeCreatedBy(raw []byte) (createdBy, error) {
	var by createdBy
	if raw[0] == '{' && plainFields(raw, createdByFields, func(i int, v []byte) bool {
		if i == 0 {
			return by.StepID.UnmarshalJSON(v) == nil
		}
		return by.Clock.UnmarshalJSON(v) == nil
	}) {
		return by, nil
	}
	by = createdBy{}
	err := json.Unmarshal(raw, &by)
	return by, err
}

var sessionFields = []string{"sessionId", "id", "flowId", "flowVersion", "environment", "sessionStatus", "status", "subjectId",
	"outcome", "createdAt", "startedAt", "updatedAt", "completedAt", "expiresAt", "redirectUrl", "state", "lastStep",
	"metadata", "results", "sessionContext"}

// decodeSessionWire decodes a session answer: the fast path when it applies, else
// encoding/json.
func decodeSessionWire(body []byte) (sessionWire, error) {
	if w, ok := sessionFast(body); ok {
		return w, nil
	}
	var w sessionWire
	err := json.Unmarshal(body, &w)
	return w, err
}

// sessionFast is the fast path of decodeSessionWire; ok is false when it does not apply.
func sessionFast(body []byte) (sessionWire, bool) {
	var w sessionWire
	ok := len(body) > 0 && body[0] == '{' && jsonscan.Valid(body) && plainFields(body, sessionFields, w.set)
	return w, ok
}

// set stores the member sessionFields[i].
func (w *sessionWire) set(i int, v []byte) bool {
	switch i {
	case 0:
		return text(v, &w.SessionID)
	case 1:
		return text(v, &w.ID)
	case 2:
		return text(v, &w.FlowID)
	case 3:
		return w.FlowVersion.UnmarshalJSON(v) == nil
	case 4:
		return text(v, &w.Environment)
	case 5:
		return w.SessionStatus.UnmarshalJSON(v) == nil
	case 6:
		return w.Status.UnmarshalJSON(v) == nil
	case 7:
		return w.SubjectID.UnmarshalJSON(v) == nil
	case 8:
		return w.Outcome.UnmarshalJSON(v) == nil
	case 9:
		return w.CreatedAt.UnmarshalJSON(v) == nil
	case 10:
		return w.StartedAt.UnmarshalJSON(v) == nil
	case 11:
		return w.UpdatedAt.UnmarshalJSON(v) == nil
	case 12:
		return w.CompletedAt.UnmarshalJSON(v) == nil
	case 13:
		return w.ExpiresAt.UnmarshalJSON(v) == nil
	case 14:
		return w.RedirectURL.UnmarshalJSON(v) == nil
	case 15:
		return w.State.UnmarshalJSON(v) == nil
	case 16:
		return w.setLastStep(v)
	case 17:
		return w.setMetadata(v)
	case 18:
		w.Results = rawCopy(v)
	case 19:
		return w.setContext(v)
	}
	return true
}

// setLastStep: null leaves the pointer nil, anything else goes to LastStep.UnmarshalJSON.
func (w *sessionWire) setLastStep(v []byte) bool {
	if v[0] == 'n' {
		return true
	}
	w.LastStep = new(LastStep)
	if v[0] != '{' {
		return w.LastStep.UnmarshalJSON(v) == nil
	}
	var l lastStepWire
	if !plainFields(v, lastStepFields, l.set) {
		return w.LastStep.UnmarshalJSON(v) == nil
	}
	*w.LastStep = l.lastStep()
	return true
}

var lastStepFields = []string{"stepId", "stepDescription", "stepName", "stepType", "verdict"}

// set stores the member lastStepFields[i].
func (l *lastStepWire) set(i int, v []byte) bool {
	switch i {
	case 0:
		return l.StepID.UnmarshalJSON(v) == nil
	case 1:
		return l.StepDescription.UnmarshalJSON(v) == nil
	case 2:
		return l.StepName.UnmarshalJSON(v) == nil
	case 3:
		return l.StepType.UnmarshalJSON(v) == nil
	}
	l.Verdict = v // read by lastStep while the body is at hand, not kept
	return true
}

// setMetadata reads the metadata object into a map as encoding/json does (keys unescaped, the
// last of a repeated key wins); null leaves it nil.
func (w *sessionWire) setMetadata(v []byte) bool {
	switch v[0] {
	case 'n':
		return true
	case '{':
	default:
		return false
	}
	m := map[string]json.RawMessage{}
	err := jsonscan.Members(v, func(k, val []byte) error {
		key, err := jsonscan.Unquote(k)
		m[key] = rawCopy(val)
		return err
	})
	w.Metadata = m
	return err == nil
}

var sessionContextFields = []string{"sessionId", "sessionStatus", "createdAt", "expiresAt"}

// setContext reads the nested sessionContext; null leaves it nil.
func (w *sessionWire) setContext(v []byte) bool {
	switch v[0] {
	case 'n':
		return true
	case '{':
	default:
		return false
	}
	c := &w.SessionContext
	*c = new(sessionContext)
	return plainFields(v, sessionContextFields, func(i int, v []byte) bool {
		switch i {
		case 0:
			return text(v, &(*c).SessionID)
		case 1:
			return (*c).SessionStatus.UnmarshalJSON(v) == nil
		case 2:
			return (*c).CreatedAt.UnmarshalJSON(v) == nil
		}
		return (*c).ExpiresAt.UnmarshalJSON(v) == nil
	})
}
