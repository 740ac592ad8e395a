package kafka

import "github.com/twmb/franz-go/pkg/kgo"

// Header returns the value of the first header of r named key, or "" when r has none: the
// connector writes each of its headers once, so the first is the only one.
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
