package config

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Setting is one effective configuration value and where it came from.
type Setting struct {
	Key string
	// Value is printable: secrets are replaced by Redacted, lists written [a, b].
	Value string
	// Source is "default", "file" or "env:" followed by the environment variable's name.
	Source string
}

// Redacted replaces the value of a secret in Explain's output.
const Redacted = "<redacted>"

// Explain loads the configuration as Load does and lists every key of cfg with its effective
// value and its source. Keys whose name contains secret, password or token and that hold text
// are redacted; the *_file keys naming where a secret is mounted and *_url keys are shown, the
// files' contents are never read. The error is Load's: the settings are still returned, with
// the defaults where a value was refused, so a caller can show them next to the problems.
// extraSecrets names further keys to redact whose names do not say so (a shared header value).
func Explain(src Source, cfg any, extraSecrets ...string) ([]Setting, error) {
	l, err := load(src)
	if err != nil {
		return nil, err
	}
	decodeErr := decode(l.merged, cfg)
	var out []Setting
	walk(reflect.ValueOf(cfg).Elem(), "", func(key string, v reflect.Value) {
		secret := secretKey(key) || slices.Contains(extraSecrets, key)
		out = append(out, Setting{Key: key, Value: printable(secret, v), Source: l.source(key)})
	})
	return out, decodeErr
}

// source says which layer set key (or, for a map, any key below it); the environment wins.
func (l layers) source(key string) string {
	if name, ok := l.envVars[key]; ok {
		return "env:" + name
	}
	for k, name := range l.envVars {
		if strings.HasPrefix(k, key+".") {
			return "env:" + name
		}
	}
	if l.file.Exists(key) {
		return "file"
	}
	return "default"
}

// walk calls fn for every leaf field with a koanf tag, in declaration order.
func walk(v reflect.Value, prefix string, fn func(key string, v reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("koanf"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && !isLeafStruct(fv.Type()) {
			walk(fv, key, fn)
			continue
		}
		fn(key, fv)
	}
}

func isLeafStruct(t reflect.Type) bool {
	return t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)
}

// secretKey reports whether key's last segment names a secret. A *_file key is the path of a
// mounted secret and a *_url key an endpoint (token_url): both are shown.
func secretKey(key string) bool {
	last := strings.ToLower(key[strings.LastIndex(key, ".")+1:])
	if strings.HasSuffix(last, "_file") || strings.HasSuffix(last, "_url") || strings.HasSuffix(last, "_path") {
		return false
	}
	return strings.Contains(last, "secret") || strings.Contains(last, "password") || strings.Contains(last, "token")
}

func printable(secret bool, v reflect.Value) string {
	if secret && (v.Kind() == reflect.String || v.Kind() == reflect.Slice || v.Kind() == reflect.Map) {
		if v.Len() == 0 {
			return `""`
		}
		return Redacted
	}
	return format(v)
}

func format(v reflect.Value) string {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok && v.Kind() != reflect.Slice {
		b, err := m.MarshalText()
		if err == nil {
			return string(b)
		}
	}
	switch v.Kind() {
	case reflect.String:
		s := v.String()
		// Quoted only where YAML would misread it, so host:port and URLs stay readable.
		if s == "" || s != strings.TrimSpace(s) || strings.ContainsAny(s, ",[]{}\"'#") || strings.Contains(s, ": ") {
			return strconv.Quote(s)
		}
		return s
	case reflect.Slice, reflect.Array:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = format(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Map:
		keys := v.MapKeys()
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprint(k.Interface())+": "+format(v.MapIndex(k)))
		}
		sort.Strings(parts)
		return "{" + strings.Join(parts, ", ") + "}"
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return "null"
		}
		return format(v.Elem())
	}
	return fmt.Sprint(v.Interface())
}
