package prober_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/prober"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenAPILiveAnswers runs the embedded default and validates the
// answers of a walk through every documented operation, successes and
// errors, against the document.
func TestOpenAPILiveAnswers(t *testing.T) {
	d := prober.MustAPIDoc(t)
	base := openAPIStartApp(t)
	client := &http.Client{Timeout: 2 * time.Minute}
	covered := map[string]bool{}

	do := func(method, path, body string, want int) []byte {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, want, resp.StatusCode, "%s %s: %s", method, path, b)
		if method == http.MethodHead {
			assert.Empty(t, b)
			return b
		}
		p := path
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
		assert.NoError(t, d.ValidateAnswer(method, p, resp.StatusCode, resp.Header, b))
		if op, ok := d.Find(method, p); ok {
			covered[op] = true
		}
		return b
	}
	waitPhase := func(pod string, phase maintenance.Phase) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var pv maintenance.PodView
			require.NoError(t, json.Unmarshal(do(http.MethodGet, "/pods/"+pod, "", http.StatusOK), &pv))
			if pv.Phase == phase {
				return
			}
			require.True(t, time.Now().Before(deadline), "%s still %s, want %s", pod, pv.Phase, phase)
			time.Sleep(100 * time.Millisecond)
		}
	}

	do(http.MethodGet, "/livez", "", 200)
	do(http.MethodHead, "/livez", "", 200)
	do(http.MethodGet, "/readyz", "", 200)
	do(http.MethodGet, "/readyz?pod=nats-1", "", 200)
	do(http.MethodGet, "/readyz?pod=nats-9", "", 404)
	do(http.MethodGet, "/metrics", "", 200)
	do(http.MethodGet, "/openapi.json", "", 200)
	do(http.MethodGet, "/config", "", 200)
	do(http.MethodPut, "/config", "", 200)
	do(http.MethodPut, "/config", `{"pods":{}}`, 400)
	do(http.MethodGet, "/raft", "", 200)
	openStream := func(query string) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events"+query, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		// The stream stays open: its first frame is the answer checked.
		frame, err := readFrame(bufio.NewReader(resp.Body))
		require.NoError(t, err)
		assert.Contains(t, frame, "id: ")
		assert.NoError(t, d.ValidateAnswer(http.MethodGet, "/events", resp.StatusCode, resp.Header, []byte(frame)))
		if op, ok := d.Find(http.MethodGet, "/events"); ok {
			covered[op] = true
		}
	}
	openStream("")
	openStream("?lastEventId=1")
	do(http.MethodGet, "/events?lastEventId=soon", "", 400)
	do(http.MethodGet, "/pods", "", 200)
	do(http.MethodGet, "/", "", 200)
	do(http.MethodHead, "/", "", 200)
	do(http.MethodGet, "/page/status.js", "", 200)
	do(http.MethodGet, "/page/status.css", "", 200)
	do(http.MethodGet, "/pods/nats-1", "", 200)
	do(http.MethodGet, "/pods/nats-9", "", 404)
	do(http.MethodGet, "/pods/Bad_Name", "", 400)
	do(http.MethodPut, "/pods/nats-1?dryRun=true", `{"reason":"openapi"}`, 200)
	do(http.MethodPut, "/pods/nats-1", `{"reason":"openapi","ttl":"30m"}`, 202)
	waitPhase("nats-1", maintenance.PhaseInMaintenance)
	do(http.MethodPut, "/pods/nats-1?wait=30s", `{"reason":"openapi"}`, 200)
	do(http.MethodGet, "/readyz", "", 503)
	do(http.MethodGet, "/readyz?pod=nats-1", "", 503)
	do(http.MethodGet, "/readyz?pod=nats-0", "", 200)
	do(http.MethodGet, "/config", "", 200)
	do(http.MethodGet, "/raft", "", 200)
	do(http.MethodPut, "/pods/nats-2", "", 409)
	do(http.MethodPut, "/dcs/dc1?dryRun", "", 200)
	do(http.MethodPut, "/dcs/dc1", `{"reason":"openapi"}`, 409)
	do(http.MethodGet, "/dcs/dc1", "", 200)
	do(http.MethodGet, "/dcs/dc9", "", 404)
	do(http.MethodPut, "/dcs/dc1?wait=forever", "", 400)
	do(http.MethodPut, "/pods/nats-0", `{"ttl":"soon"}`, 400)
	do(http.MethodPut, "/pods/nats-0", `{"reason":"`+strings.Repeat("x", prober.MaxBodyBytes)+`"}`, 413)
	do(http.MethodDelete, "/pods/nats-1?dryRun=true", "", 400)
	do(http.MethodDelete, "/pods/nats-1?wait=60s", "", 200)
	do(http.MethodDelete, "/pods/nats-1", "", 200)
	do(http.MethodDelete, "/pods/nats-9", "", 404)
	do(http.MethodDelete, "/dcs/dc1", "", 200)
	do(http.MethodDelete, "/dcs/dc9", "", 404)
	do(http.MethodPut, "/pods/nats-2?dryRun=true", `{"mode":"drain"}`, 200)
	do(http.MethodPut, "/pods/nats-2?wait=30s", `{"mode":"drain","restoreLeaders":true}`, 200)
	do(http.MethodGet, "/raft", "", 200)
	do(http.MethodPut, "/pods/nats-0", `{"mode":"cut"}`, 400)
	do(http.MethodDelete, "/pods/nats-2?wait=60s&restoreLeaders=false", "", 200)
	do(http.MethodDelete, "/pods/nats-2?restoreLeaders=perhaps", "", 400)
	do(http.MethodPost, "/balance?dc=dc1&dryRun=true", "", 200)
	do(http.MethodPost, "/balance", "", 200)
	do(http.MethodPost, "/balance?dc=dc9", "", 404)
	do(http.MethodPost, "/balance?dc=", "", 400)
	do(http.MethodPost, "/balance?to=nats-2&dryRun=true", "", 200)
	do(http.MethodPost, "/balance?to=", "", 400)
	do(http.MethodPost, "/balance?to=nats-9", "", 404)
	do(http.MethodGet, "/balance", "", 405)
	do(http.MethodGet, "/rollouts", "", 200)
	do(http.MethodPut, "/rollouts/oa", `{"hold":"soon"}`, 400)
	do(http.MethodPut, "/rollouts/oa", `{"pods":["nats-9"],"hold":"1h"}`, 404)
	do(http.MethodPut, "/rollouts/oa", `{"pods":["nats-2"],"reason":"openapi","hold":"1h"}`, 201)
	do(http.MethodPut, "/rollouts/oa", `{"pods":["nats-2"],"reason":"openapi","hold":"1h"}`, 200)
	do(http.MethodPut, "/rollouts/ob", `{"hold":"1h"}`, 409)
	do(http.MethodGet, "/rollouts/oa", "", 200)
	do(http.MethodGet, "/rollouts", "", 200)
	do(http.MethodGet, "/rollouts/ob", "", 404)
	do(http.MethodDelete, "/rollouts/oa", "", 202)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var v maintenance.RolloutView
		require.NoError(t, json.Unmarshal(do(http.MethodGet, "/rollouts/oa", "", 200), &v))
		if v.State == maintenance.RolloutStopped {
			break
		}
		require.True(t, time.Now().Before(deadline), "rollout still %s", v.State)
		time.Sleep(100 * time.Millisecond)
	}
	do(http.MethodDelete, "/rollouts/oa", "", 200)
	do(http.MethodDelete, "/rollouts/oa", "", 404)
	do(http.MethodPost, "/rollouts/oa", "", 405)
	do(http.MethodPost, "/pods/nats-1", "", 405)
	do(http.MethodPatch, "/config", "", 405)
	do(http.MethodGet, "/nodes/nats-1", "", 404)
	do(http.MethodPost, "/local/prestop?timeout=soon", "", 400)
	do(http.MethodPost, "/local/prestop", "", 404)
	do(http.MethodGet, "/local/report?maxAge=soon", "", 400)
	do(http.MethodGet, "/local/report", "", 404)

	var missing []string
	for _, op := range d.Operations() {
		if !covered[op] {
			missing = append(missing, op)
		}
	}
	slices.Sort(missing)
	assert.Empty(t, missing, "documented operations the walk did not exercise")
}

// readFrame reads one frame of a text/event-stream, up to its blank line.
func readFrame(rd *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := rd.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\n" {
			return b.String(), nil
		}
	}
}

// openAPIStartApp boots the embedded default on loopback with free ports
// and returns its API's base URL once it is ready. It stops at the end of
// the test.
func openAPIStartApp(t *testing.T) string {
	t.Helper()
	a := &app.Embedded{
		Listen: "127.0.0.1:0", DataDir: t.TempDir(), ClientPort: 0, MonitorPort: 0,
		Resync: 2 * time.Second, Logger: zerolog.Nop(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := a.Started()
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "embedded app")
		case <-time.After(60 * time.Second):
			t.Error("embedded app did not stop within 60s")
		}
	})
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("embedded app stopped while starting: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("embedded app did not start within 90s")
	}
	base := "http://" + a.Addr()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		require.True(t, time.Now().Before(deadline), "embedded app not ready within 60s: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
}
