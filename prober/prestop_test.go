package prober

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
)

func TestPreStopRoute(t *testing.T) {
	var got []time.Duration
	s := NewServer(Options{Addr: "127.0.0.1:0", Logger: zerolog.Nop(),
		PreStop: func(_ context.Context, timeout time.Duration) (maintenance.PreStopReport, error) {
			got = append(got, timeout)
			return maintenance.PreStopReport{Pod: "nats-1", Complete: true, Leads: []string{}}, nil
		}})
	for _, tc := range []struct {
		name, method, target, remote string
		status                       int
		timeout                      time.Duration // what the PreStopper gets; 0: not called
	}{
		{"another pod is refused", http.MethodPost, "/local/prestop", "10.0.0.7:41000", http.StatusForbidden, 0},
		{"the pod itself", http.MethodPost, "/local/prestop", "127.0.0.1:41000", http.StatusOK, maintenance.DefaultPreStopTimeout},
		{"the pod itself over IPv6", http.MethodPost, "/local/prestop?timeout=3s", "[::1]:41000", http.StatusOK, 3 * time.Second},
		{"a timeout is capped", http.MethodPost, "/local/prestop?timeout=1h", "127.0.0.1:41000", http.StatusOK, MaxPreStopTimeout},
		{"a bad timeout", http.MethodPost, "/local/prestop?timeout=soon", "127.0.0.1:41000", http.StatusBadRequest, 0},
		{"a negative timeout", http.MethodPost, "/local/prestop?timeout=-1s", "127.0.0.1:41000", http.StatusBadRequest, 0},
		{"GET is not allowed", http.MethodGet, "/local/prestop", "127.0.0.1:41000", http.StatusMethodNotAllowed, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got = nil
			req := httptest.NewRequest(tc.method, tc.target, nil)
			req.RemoteAddr = tc.remote
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			if tc.timeout == 0 {
				assert.Empty(t, got, "the node was not touched")
				var e ErrorResponse
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), rec.Body.String())
				assert.NotEmpty(t, e.Error.Message)
				return
			}
			assert.Equal(t, []time.Duration{tc.timeout}, got)
			var rep maintenance.PreStopReport
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &rep))
			assert.Equal(t, "nats-1", rep.Pod)
		})
	}

	t.Run("no local node", func(t *testing.T) {
		s := NewServer(Options{Addr: "127.0.0.1:0", Logger: zerolog.Nop()})
		req := httptest.NewRequest(http.MethodPost, "/local/prestop", nil)
		req.RemoteAddr = "127.0.0.1:41000"
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		assert.Equal(t, http.StatusNotFound, rec.Code, rec.Body.String())
	})
}
