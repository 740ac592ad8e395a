// Package config loads the connector's configuration: a YAML file overlaid by environment
// variables, decoded with koanf onto a struct that already holds every default. It knows about
// files and the environment and nothing about what the keys mean: each component validates its
// own section.
//
// Environment variables are IDNOW_CONNECTOR_ + the key path upper-cased with "." written as "__"
// (kafka.brokers <- IDNOW_CONNECTOR_KAFKA__BROKERS); lists are comma-separated. Durations are Go
// duration strings ("5s", "250ms", "1h30m"); a bare number other than 0 is an error.
package config

import (
	"encoding"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix starts every environment variable that overrides a config key.
const EnvPrefix = "IDNOW_CONNECTOR_"

// Source says where configuration comes from.
type Source struct {
	// Path is the YAML file. Empty means no file.
	Path string
	// Required makes a missing file an error (true when --config was given explicitly).
	Required bool
	// Environ is the environment, as os.Environ returns it.
	Environ []string
}

// Load decodes the file and the environment onto cfg, which must be a pointer to a struct
// pre-filled with defaults and tagged with `koanf:"..."`. Keys that match no field are an error
// that names them; so are values of the wrong type. Every problem is reported, not only the
// first: the error joins one line per key, and cfg holds whatever did decode (the defaults
// where a value was refused), so a caller can still validate it and report those problems too.
func Load(src Source, cfg any) error {
	l, err := load(src)
	if err != nil {
		return err
	}
	return decode(l.merged, cfg)
}

// layers keeps the file and the environment apart as well as merged, so Explain can say where
// each value came from.
type layers struct {
	merged, file, env *koanf.Koanf
	// envVars maps a key to the environment variable that set it.
	envVars map[string]string
}

func load(src Source) (layers, error) {
	l := layers{merged: koanf.New("."), file: koanf.New("."), env: koanf.New("."), envVars: map[string]string{}}
	if src.Path != "" {
		err := l.file.Load(file.Provider(src.Path), yaml.Parser())
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist) && !src.Required:
			// No file at the default path: defaults and environment only.
		default:
			return l, fmt.Errorf("config file %s: %w", src.Path, err)
		}
	}
	if err := l.env.Load(env.Provider(".", env.Opt{
		Prefix: EnvPrefix,
		EnvironFunc: func() []string {
			return src.Environ
		},
		TransformFunc: func(name, value string) (string, any) {
			key := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
			key = strings.ReplaceAll(key, "__", ".")
			l.envVars[key] = name
			return key, value
		},
	}), nil); err != nil {
		return l, fmt.Errorf("config from environment: %w", err)
	}
	// Merge keeps the file's values and lets the environment's win, as two Loads onto one
	// instance would.
	if err := l.merged.Merge(l.file); err != nil {
		return l, fmt.Errorf("config file %s: %w", src.Path, err)
	}
	if err := l.merged.Merge(l.env); err != nil {
		return l, fmt.Errorf("config from environment: %w", err)
	}
	return l, nil
}

func decode(k *koanf.Koanf, cfg any) error {
	// Slices given in the file or environment replace the default list; they are not merged
	// element by element into it.
	resetSlices(k, reflect.ValueOf(cfg).Elem(), "")
	err := k.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			// A custom DecoderConfig replaces koanf's default one, hooks included, so the hooks
			// koanf would have installed are listed again here: without them "10s" would not
			// decode into a time.Duration nor "a:9092,b:9092" into a []string.
			// durationHook replaces mapstructure's StringToTimeDurationHookFunc, which together
			// with WeaklyTypedInput accepts a bare number as nanoseconds.
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				durationHook,
				mapstructure.StringToSliceHookFunc(","),
				mapstructure.TextUnmarshallerHookFunc(),
			),
			Result:           cfg,
			WeaklyTypedInput: true,
			TagName:          "koanf",
		},
	})
	var errs []error
	if err != nil {
		errs = append(errs, decodeProblems(err)...)
		// mapstructure walks maps in random order; sorted, the same file gives the same report.
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	}
	// mapstructure records unused keys only when everything else decoded, so they are found
	// here by walking the struct: a file with a typo and a type mismatch reports both.
	unknown := unknownKeys(k, reflect.TypeOf(cfg).Elem())
	for _, key := range unknown {
		errs = append(errs, fmt.Errorf("config: unknown key %s: check the spelling against config.yaml, which lists every key (environment variables: %s + key with . written as __)",
			key, EnvPrefix))
	}
	return errors.Join(errs...)
}

// decodeProblems flattens mapstructure's joined errors into one error per key, rewriting type
// mismatches into the "key: what was given, what is expected" form the components' Validate
// errors use, instead of mapstructure's "'count' expected type 'int', got unconvertible type".
func decodeProblems(err error) []error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, decodeProblems(e)...)
		}
		return out
	}
	var de *mapstructure.DecodeError
	if _, ok := err.(*mapstructure.DecodeError); !ok && errors.Unwrap(err) != nil { //nolint:errorlint // this layer only: a wrapper around the DecodeError is peeled one level per call
		// mapstructure wraps the joined list in "decoding failed due to the following error(s)".
		return decodeProblems(errors.Unwrap(err))
	}
	if !errors.As(err, &de) {
		if inner := errors.Unwrap(err); inner != nil {
			return decodeProblems(inner)
		}
		return []error{fmt.Errorf("config: %w", err)}
	}
	inner := de.Unwrap()
	if _, ok := inner.(interface{ Unwrap() []error }); ok {
		// A container (a list, say) whose elements failed: report each element.
		return decodeProblems(inner)
	}
	var pe *mapstructure.ParseError
	if errors.As(inner, &pe) {
		return []error{fmt.Errorf("config: %s: %s given, %s expected", de.Name(), given(pe.Value), expected(pe.Expected.Type()))}
	}
	var ue *mapstructure.UnconvertibleTypeError
	if errors.As(inner, &ue) {
		return []error{fmt.Errorf("config: %s: %s given, %s expected", de.Name(), given(ue.Value), expected(ue.Expected.Type()))}
	}
	return []error{fmt.Errorf("config: %s: %w", de.Name(), inner)}
}

// unknownKeys lists the keys of k that name no field of t, sorted. A map field takes any key
// below it.
func unknownKeys(k *koanf.Koanf, t reflect.Type) []string {
	var out []string
	for _, key := range k.Keys() {
		if !knownKey(t, strings.Split(key, ".")) {
			out = append(out, key)
		}
	}
	sort.Strings(out)
	return out
}

func knownKey(t reflect.Type, path []string) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if len(path) == 0 {
		return true
	}
	switch t.Kind() {
	case reflect.Map:
		return true
	case reflect.Struct:
		if t == durationType || t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
			return false
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("koanf"), ",")[0]
			if tag == path[0] && tag != "-" {
				return knownKey(f.Type, path[1:])
			}
			if f.Anonymous && tag == "" && knownKey(f.Type, path) {
				return true
			}
		}
	}
	return false
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// given describes a refused value as the user wrote it.
func given(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []any:
		return "a list"
	case map[string]any:
		return "a section (a map of keys)"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("%v (%T)", v, v)
}

// expected names a Go type in the words config.yaml uses.
func expected(t reflect.Type) string {
	if t == durationType {
		return `a duration such as "5s" or "2m"`
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number of 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list (YAML [a, b] or, in the environment, comma-separated)"
	case reflect.Map, reflect.Struct:
		return "a section (a map of keys)"
	}
	return t.String()
}

var durationType = reflect.TypeFor[time.Duration]()

// durationHook decodes time.Duration fields strictly: a Go duration string ("5s", "250ms",
// "1h30m") or the number 0. Any other bare number is refused, because the permissive conversion
// reads `produce_timeout: 5` as five nanoseconds, a setting that silently breaks everything that
// depends on it. mapstructure prefixes the error with the key's path.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.String:
		s := strings.TrimSpace(data.(string))
		d, err := time.ParseDuration(s)
		if err == nil {
			return d, nil
		}
		if _, numErr := strconv.ParseFloat(s, 64); numErr == nil {
			return nil, bareNumberError(s)
		}
		return nil, fmt.Errorf("%q is not a duration: write a number with a unit, e.g. \"5s\", \"250ms\", \"2m\" or \"1h30m\"", s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		v := reflect.ValueOf(data)
		if v.IsZero() {
			return time.Duration(0), nil
		}
		return nil, bareNumberError(fmt.Sprint(data))
	}
	return data, nil
}

func bareNumberError(n string) error {
	return fmt.Errorf("bare number %s is not a duration: give the unit, e.g. \"%ss\" for %s seconds or \"%sms\" for %s milliseconds (units: ns, us, ms, s, m, h; only 0 may be written without one)", n, n, n, n, n)
}

// resetSlices empties every slice field whose key is set in k, so the decoded list is exactly the
// configured one.
func resetSlices(k *koanf.Koanf, v reflect.Value, prefix string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("koanf"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.Struct:
			resetSlices(k, fv, key)
		case reflect.Slice:
			if k.Exists(key) {
				fv.Set(reflect.Zero(fv.Type()))
			}
		}
	}
}
