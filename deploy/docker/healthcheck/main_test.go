package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbe(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{name: "ready", status: http.StatusOK, body: `{"ready":true}`},
		{name: "no content", status: http.StatusNoContent},
		{name: "not ready", status: http.StatusServiceUnavailable, body: `{"ready":false,"checks":[{"name":"kafka","ready":false}]}`, wantErr: `"name":"kafka"`},
		{name: "not found", status: http.StatusNotFound, wantErr: "404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			err := probe(t.Context(), srv.Client(), srv.URL+"/readyz")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("probe: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("probe error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestProbeUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	if err := probe(t.Context(), http.DefaultClient, url); err == nil {
		t.Fatal("probe of a closed server succeeded")
	}
}
