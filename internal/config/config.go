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
// that names them; so are values of the wrong type.
func Load(src Source, cfg any) error {
	k := koanf.New(".")
	if src.Path != "" {
		err := k.Load(file.Provider(src.Path), yaml.Parser())
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist) && !src.Required:
			// No file at the default path: defaults and environment only.
		default:
			return fmt.Errorf("config file %s: %w", src.Path, err)
		}
	}
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix: EnvPrefix,
		EnvironFunc: func() []string {
			return src.Environ
		},
		TransformFunc: func(key, value string) (string, any) {
			key = strings.ToLower(strings.TrimPrefix(key, EnvPrefix))
			return strings.ReplaceAll(key, "__", "."), value
		},
	}), nil); err != nil {
		return fmt.Errorf("config from environment: %w", err)
	}
	return decode(k, cfg)
}

func decode(k *koanf.Koanf, cfg any) error {
	var md mapstructure.Metadata
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
			Metadata:         &md,
			Result:           cfg,
			WeaklyTypedInput: true,
			TagName:          "koanf",
		},
	})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if len(md.Unused) > 0 {
		sort.Strings(md.Unused)
		return fmt.Errorf("config: unknown key(s) %s: check the spelling against config.yaml, which lists every key (environment variables: %s + key with . written as __)",
			strings.Join(md.Unused, ", "), EnvPrefix)
	}
	return nil
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
