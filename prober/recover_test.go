package prober

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecoverPanics(t *testing.T) {
	s := NewServer(Options{Logger: zerolog.Nop()})
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		wantStatus int
		wantBroken bool // the body must not read as complete
	}{
		{"panic before writing: a 500", func(http.ResponseWriter, *http.Request) { panic("bug") }, http.StatusInternalServerError, false},
		{"panic after the header: the response is aborted", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"pods":[`)
			_ = http.NewResponseController(w).Flush()
			panic("bug")
		}, http.StatusOK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(s.recoverPanics(tt.handler))
			defer ts.Close()
			resp, err := http.Get(ts.URL)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, tt.wantStatus, resp.StatusCode)
			_, err = io.ReadAll(resp.Body)
			if tt.wantBroken {
				assert.Error(t, err, "a truncated body must not read as complete")
			} else {
				assert.NoError(t, err)
			}
		})
	}
}
