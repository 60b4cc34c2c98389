package prober

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/natsraft"
)

// reporterFunc is a LocalReporter from a function.
type reporterFunc func(ctx context.Context, maxAge time.Duration) ([]byte, error)

func (f reporterFunc) LocalReport(ctx context.Context, maxAge time.Duration) ([]byte, error) {
	return f(ctx, maxAge)
}

func TestReportRoute(t *testing.T) {
	var got []time.Duration
	var fail error
	s := NewServer(Options{Addr: "127.0.0.1:0", Logger: zerolog.Nop(),
		Reports: reporterFunc(func(_ context.Context, maxAge time.Duration) ([]byte, error) {
			got = append(got, maxAge)
			if fail != nil {
				return nil, fail
			}
			return []byte(`{"age":5,"name":"nats-1","routes":[]}`), nil
		}),
		PeerIP: func(ip string) bool { return ip == "10.0.0.7" },
	})
	for _, tc := range []struct {
		name, method, target, remote string
		fail                         error
		status                       int
		maxAge                       time.Duration // what the reporter gets; -1: not called
	}{
		{"a NATS pod", http.MethodGet, "/local/report?maxAge=1.5s", "10.0.0.7:41000", nil, http.StatusOK, 1500 * time.Millisecond},
		{"the pod itself, read now by default", http.MethodGet, "/local/report", "127.0.0.1:41000", nil, http.StatusOK, 0},
		{"a max age is capped", http.MethodGet, "/local/report?maxAge=1h", "[::1]:41000", nil, http.StatusOK, MaxReportAge},
		{"a caller that is not a NATS pod", http.MethodGet, "/local/report", "10.0.0.8:41000", nil, http.StatusForbidden, -1},
		{"a bad max age", http.MethodGet, "/local/report?maxAge=soon", "10.0.0.7:41000", nil, http.StatusBadRequest, -1},
		{"a negative max age", http.MethodGet, "/local/report?maxAge=-1s", "10.0.0.7:41000", nil, http.StatusBadRequest, -1},
		{"PUT is not allowed", http.MethodPut, "/local/report", "10.0.0.7:41000", nil, http.StatusMethodNotAllowed, -1},
		{"the local node not known yet", http.MethodGet, "/local/report", "10.0.0.7:41000", natsraft.ErrNoLocalNode, http.StatusServiceUnavailable, 0},
		{"the read failed", http.MethodGet, "/local/report", "10.0.0.7:41000", errors.New("context canceled"), http.StatusServiceUnavailable, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, fail = nil, tc.fail
			req := httptest.NewRequest(tc.method, tc.target, nil)
			req.RemoteAddr = tc.remote
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			if tc.maxAge < 0 {
				assert.Empty(t, got, "the reporter was not asked")
			} else {
				assert.Equal(t, []time.Duration{tc.maxAge}, got)
			}
			if tc.status != http.StatusOK {
				var e ErrorResponse
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), rec.Body.String())
				assert.NotEmpty(t, e.Error.Message)
				return
			}
			assert.JSONEq(t, `{"age":5,"name":"nats-1","routes":[]}`, rec.Body.String())
			assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
		})
	}

	t.Run("no local node", func(t *testing.T) {
		s := NewServer(Options{Addr: "127.0.0.1:0", Logger: zerolog.Nop()})
		req := httptest.NewRequest(http.MethodGet, "/local/report", nil)
		req.RemoteAddr = "127.0.0.1:41000"
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		assert.Equal(t, http.StatusNotFound, rec.Code, rec.Body.String())
	})
}
