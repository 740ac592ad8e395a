// Package statetest holds the checks that tests of several packages make of kept state: which
// strings a value holds, and whether one of them lies inside a string it was built from. A kept
// string inside a decoded record's string pins the decoder's pooled buffer it points into.
package statetest

import (
	"reflect"
	"unsafe"
)

// HeldStrings returns every non-empty string reachable from v: struct fields (unexported ones
// too), pointers, interfaces, slices, arrays and maps.
func HeldStrings(v any) []string { return held(reflect.ValueOf(v)) }

func held(v reflect.Value) []string {
	var out []string
	switch v.Kind() {
	case reflect.String:
		if v.Len() > 0 {
			out = append(out, v.String())
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			out = held(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			out = append(out, held(v.Field(i))...)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			out = append(out, held(v.Index(i))...)
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			out = append(out, held(it.Key())...)
			out = append(out, held(it.Value())...)
		}
	}
	return out
}

// Overlaps reports whether two non-empty strings share memory.
func Overlaps(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(unsafe.StringData(a))), uintptr(unsafe.Pointer(unsafe.StringData(b)))
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}
