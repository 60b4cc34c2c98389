package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/maintenance"
)

// The client commands and the Postman collection run against one embedded
// default (one dc of three, nats-0..2) that the first test to need it
// boots and TestMain stops. Each test leaves it as it found it: nothing in
// maintenance.
var shared struct {
	once    sync.Once
	liveApp *testApp
	err     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.liveApp != nil {
		if err := shared.liveApp.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop embedded app:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// testApp is the embedded default running in the background.
type testApp struct {
	base   string
	dir    string
	cancel context.CancelFunc
	done   chan error
}

func startTestApp() (*testApp, error) {
	dir, err := os.MkdirTemp("", "prober-cli-test-")
	if err != nil {
		return nil, err
	}
	liveApp := &app.Embedded{
		Listen: "127.0.0.1:0", DataDir: dir, ClientPort: 0, MonitorPort: 0,
		Resync: 2 * time.Second, Logger: zerolog.Nop(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &testApp{dir: dir, cancel: cancel, done: make(chan error, 1)}
	started := liveApp.Started()
	go func() { a.done <- liveApp.Run(ctx) }()
	select {
	case <-started:
	case err := <-a.done:
		cancel()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded app stopped while starting: %w", err)
	case <-time.After(90 * time.Second):
		_ = a.stop()
		return nil, fmt.Errorf("embedded app did not start within 90s")
	}
	a.base = "http://" + liveApp.Addr()
	return a, nil
}

func (a *testApp) stop() error {
	a.cancel()
	defer os.RemoveAll(a.dir)
	select {
	case err := <-a.done:
		return err
	case <-time.After(60 * time.Second):
		return fmt.Errorf("embedded app did not stop within 60s")
	}
}

// app returns the shared embedded default, booted on first use, once it
// is ready and nothing is in maintenance.
func liveApp(t *testing.T) *testApp {
	t.Helper()
	shared.once.Do(func() { shared.liveApp, shared.err = startTestApp() })
	require.NoError(t, shared.err)
	a := shared.liveApp
	a.waitReady(t)
	doc := a.config(t)
	require.Empty(t, doc.Pods, "a previous test left pods in maintenance")
	require.Empty(t, doc.DCs, "a previous test left dcs in maintenance")
	return a
}

// waitReady polls /readyz until it answers 200.
func (a *testApp) waitReady(t *testing.T) {
	t.Helper()
	poll(t, 60*time.Second, "/readyz 200", func() (bool, string) {
		code, body := a.get(t, "/readyz", nil)
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	})
}

// poll calls cond every 100ms until it holds, and fails the test with the
// last detail when it does not within timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, timeout, detail)
		}
		<-tick.C
	}
}

// get calls GET base+path and decodes a 200 answer into out (when not nil).
func (a *testApp) get(t *testing.T, path string, out any) (int, []byte) {
	t.Helper()
	resp, err := http.Get(a.base + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil && resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(b, out), "%s", b)
	}
	return resp.StatusCode, b
}

func (a *testApp) config(t *testing.T) *maintenance.Document {
	t.Helper()
	var d maintenance.Document
	code, b := a.get(t, "/config", &d)
	require.Equal(t, http.StatusOK, code, "%s", b)
	return &d
}

func (a *testApp) pod(t *testing.T, name string) maintenance.PodView {
	t.Helper()
	var pv maintenance.PodView
	code, b := a.get(t, "/pods/"+name, &pv)
	require.Equal(t, http.StatusOK, code, "%s", b)
	return pv
}

// result is what one run of Main printed.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs the command line in-process.
func run(args ...string) result {
	var out, errOut bytes.Buffer
	code := Main(args, &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// lines splits output into lines without the trailing empty one.
func lines(s string) []string {
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}
