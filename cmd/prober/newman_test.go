package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/tools/newman"
)

// runNewman runs the Postman collection against base (tools/newman).
func runNewman(t *testing.T, base string) newman.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := newman.Run(ctx, repoRoot(t), base, t.TempDir())
	require.NoError(t, err, "%s", res.Output)
	return res
}

// TestPostmanCollection runs the Postman collection with newman (installed
// by scripts/newman.sh from the npm registry into .cache/newman) against
// the embedded default, and shows that it fails against a server that is
// not the prober.
func TestPostmanCollection(t *testing.T) {
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed: newman, which runs the Postman collection, comes from npm")
	}

	t.Run("passes against the embedded default", func(t *testing.T) {
		a := liveApp(t)
		begin := time.Now()
		res := runNewman(t, a.base)
		t.Logf("newman took %.1fs", time.Since(begin).Seconds())
		for _, f := range res.Report.Run.Failures {
			t.Errorf("%s: %s: %s", f.Source.Name, f.Error.Test, f.Error.Message)
		}
		require.NoError(t, res.Exit, "newman:\n%s", res.Output)
		stats := res.Report.Run.Stats
		assert.GreaterOrEqual(t, stats["requests"].Total, 44, "every request ran")
		assert.GreaterOrEqual(t, stats["assertions"].Total, 200, "every test ran")
		assert.Zero(t, stats["assertions"].Failed)
		assert.Zero(t, stats["testScripts"].Failed, "no test script threw")
		doc := a.config(t)
		assert.Empty(t, doc.Pods, "the collection leaves the cluster as it found it")
		assert.Empty(t, doc.DCs)
	})

	t.Run("fails against a server that is not the prober", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"ready"}`))
		}))
		defer srv.Close()
		res := runNewman(t, srv.URL)
		require.Error(t, res.Exit, "newman passed against a fake:\n%s", res.Output)
		assert.Greater(t, len(res.Report.Run.Failures), 40, "nearly every request fails")
	})
}

// repoRoot is the folder of go.mod above the test's working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.mod above the working directory")
		dir = parent
	}
}
